// Package release turns a stowed slug into release vN of an app, and keeps the
// app's build settings (config vars, buildpacks). The local Releaser records
// releases durably in stow; it never builds anything.
package release
