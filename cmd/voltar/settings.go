package main

import (
	"voltar/internal/cleanup"
	"voltar/internal/crypt"
	"voltar/internal/folder"
	"voltar/internal/objio"
	"voltar/internal/store"
)

// writerSettings is what every backup and dump of a command shares, built
// in one place from the config and what the command opened.
func (a *app) writerSettings(st store.Store, host string, rcpt *crypt.Recipients, j *cleanup.Journal) folder.Settings {
	return folder.Settings{
		Store: st, Host: host,
		Encoding: objio.Encoding{Compression: a.cfg.Compression, Level: a.cfg.CompressionLevel, Threads: a.cfg.Threads, Recipients: rcpt},
		Version:  version, Logger: a.log, Journal: j, CleanupTimeout: a.cfg.CleanupTimeout,
	}
}
