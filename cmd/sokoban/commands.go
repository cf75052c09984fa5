package main

import (
	"github.com/sokoban-deploy/sokoban/cluster"
	"github.com/sokoban-deploy/sokoban/keys"
	"github.com/sokoban-deploy/sokoban/receiver"
	"github.com/sokoban-deploy/sokoban/release"
	"github.com/sokoban-deploy/sokoban/sshd"
	"github.com/sokoban-deploy/sokoban/stow"
)

// appWiring is what the SSH operating commands are built from.
type appWiring struct {
	access   sshd.Access
	registry cluster.Registry
	recv     *receiver.Receiver
	store    stow.Store
	keys     *keys.Store
	// heroku: releases, config vars and buildpacks live on Heroku.
	heroku bool
	linker sshd.KeyLinker
}

func appDeps(w appWiring) sshd.AppDeps {
	d := sshd.AppDeps{
		Access: w.access, Registry: w.registry, Builds: w.recv, Apps: keys.NewApps(w.store),
		Keys: w.keys, Gate: w.recv,
	}
	if w.linker != nil {
		d.Linker = w.linker
	}
	if !w.heroku {
		d.Releases = release.NewLocal(w.store)
		d.Settings = release.NewLocalSettings(w.store)
	}
	// The receiver purges caches once it keeps them in stow.
	if p, ok := any(w.recv).(sshd.CachePurger); ok {
		d.Cache = p
	}
	return d
}
