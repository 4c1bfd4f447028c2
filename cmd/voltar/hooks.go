package main

import (
	"voltar/internal/hook"
	"voltar/internal/volume"
)

// hooksFor is the hooks: (and volume_hooks:) of v.
func (a *app) hooksFor(v volume.Volume) hook.Set {
	h := a.cfg.HooksFor(v.ID())
	return hook.Set{
		Pre:  hook.Command{Argv: h.PreSnapshot, Timeout: h.Timeout},
		Post: hook.Command{Argv: h.PostSnapshot, Timeout: h.Timeout},

		PreBackup:  hook.Command{Argv: h.PreBackup, Timeout: h.Timeout},
		PostBackup: hook.Command{Argv: h.PostBackup, Timeout: h.Timeout},
	}
}
