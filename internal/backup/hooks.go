package backup

import (
	"context"
	"errors"

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
	env := hook.Env(
		"VOLTAR_VOLUME", r.v.ID(), "VOLTAR_VOLUME_KIND", r.v.Kind, "VOLTAR_DEVICE", r.v.Path,
		"VOLTAR_FORMAT", r.v.Format, "VOLTAR_BACKUP_ID", r.m.ID, "VOLTAR_RUN_ID", r.o.RunID)
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
