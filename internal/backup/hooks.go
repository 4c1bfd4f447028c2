package backup

import (
	"context"
	"errors"
	"strconv"

	"voltar/internal/cleanup"
	"voltar/internal/hook"
	"voltar/internal/manifest"
	"voltar/internal/volume"
)

// hooked makes the snapshot with take, between the volume's hooks: the pre
// hook first (if it fails, no snapshot is taken), then take, then the post
// hook whenever the pre hook ran (also after its failure, a failed
// snapshot or a cancel: it runs under a context the cancel does not
// reach), or after take when there is no pre hook. It returns the snapshot
// take made, if any, even when the post hook failed, so it is released.
func (r *run) hooked(ctx context.Context, take func() (*volume.Snapshot, error)) (*volume.Snapshot, error) {
	h := r.o.Hooks
	env := r.hookEnv()
	var snap *volume.Snapshot
	var err error
	if len(h.Pre.Argv) > 0 {
		if len(h.Post.Argv) > 0 {
			// Owed from now on: a run killed before it ran leaves it to
			// the next command's sweep.
			owed := hook.Owed{Argv: h.Post.Argv, Env: env, Timeout: h.Post.Timeout}.Ref()
			if err := r.hold(cleanup.Hook, owed); err != nil {
				return nil, err
			}
			defer r.done(cleanup.Hook, owed)
		}
		err = hook.Run(ctx, hook.PreSnapshot, h.Pre, env, r.log)
		r.preHooked = err == nil
	}
	if err == nil {
		snap, err = take()
	}
	if len(h.Post.Argv) > 0 {
		status, name, msg := "ok", "", ""
		if snap != nil {
			name = snap.Name
		}
		if err != nil {
			status, msg = "failed", err.Error()
		}
		perr := hook.Run(context.WithoutCancel(ctx), hook.PostSnapshot, h.Post,
			append(env, hook.Env("VOLTAR_STATUS", status, "VOLTAR_SNAPSHOT", name, "VOLTAR_ERROR", msg)...), r.log)
		err = errors.Join(err, perr)
	}
	return snap, err
}

// hookEnv is what every hook of the volume finds in its environment.
func (r *run) hookEnv() []string {
	return hook.Env(
		"VOLTAR_VOLUME", r.v.ID(), "VOLTAR_VOLUME_KIND", r.v.Kind, "VOLTAR_DEVICE", r.v.Path,
		"VOLTAR_FORMAT", r.v.Format, "VOLTAR_BACKUP_ID", r.m.ID, "VOLTAR_RUN_ID", r.o.RunID)
}

// preBackup runs the pre_backup hook, if any: its failure fails the
// volume before anything is made.
func (r *run) preBackup(ctx context.Context) error {
	if len(r.o.Hooks.PreBackup.Argv) == 0 {
		return nil
	}
	return hook.Run(ctx, hook.PreBackup, r.o.Hooks.PreBackup, r.hookEnv(), r.log)
}

// postBackup runs the post_backup hook, if any, once everything of the
// backup is done, with its outcome: VOLTAR_STATUS ok (the backup is
// stored; m) or failed (VOLTAR_ERROR says why). It runs also after a
// cancel. Its failure is the volume's error too; a stored backup stays.
func (r *run) postBackup(ctx context.Context, m *manifest.Manifest, errp *error) {
	h := r.o.Hooks.PostBackup
	if len(h.Argv) == 0 {
		return
	}
	status, msg, stored, level := "failed", "", "", ""
	if *errp != nil {
		msg = (*errp).Error()
	}
	if m != nil {
		if *errp == nil {
			status = "ok"
		}
		stored, level = strconv.FormatInt(m.PublishedBytes, 10), strconv.Itoa(m.Level())
	}
	env := append(r.hookEnv(), hook.Env("VOLTAR_STATUS", status, "VOLTAR_ERROR", msg, "VOLTAR_STORED_BYTES", stored, "VOLTAR_LEVEL", level)...)
	if err := hook.Run(context.WithoutCancel(ctx), hook.PostBackup, h, env, r.log); err != nil {
		*errp = errors.Join(*errp, err)
	}
}

// consistency is what the manifest says about the snapshot's state: the
// application was quiesced by a pre hook, the image was not in use, or a
// crash-consistent point in time.
func (r *run) consistency(s *volume.Snapshot) string {
	switch {
	case s.Consistency != "":
		return s.Consistency
	case r.preHooked:
		return manifest.ConsistencyHooked
	case s.Kind == volume.KindNone:
		return manifest.ConsistencyOffline
	}
	return manifest.ConsistencyCrash
}
