package sshd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/stow"
)

// SharedHostKeyPrefix is where cluster nodes (--host-keys-from-store) keep
// the private host keys they all present.
const SharedHostKeyPrefix = "secrets/host_keys/"

// maxHostKeySize bounds a stored host key read into memory; an RSA 3072 key
// in OpenSSH PEM form is about 2.6 KiB.
const maxHostKeySize = 64 << 10

// HostKeyStore is the part of the store shared host keys need (stow.Store).
type HostKeyStore interface {
	Create(ctx context.Context, key string, r io.Reader) (stow.Info, error)
	Get(ctx context.Context, key string) (io.ReadCloser, stow.Info, error)
}

// SharedHostKeys returns the host keys every node of a cluster presents,
// generating the missing ones. The first write of each key is create-only:
// when nodes start together, exactly one key is stored, and every node uses
// what the store holds (the loser of the race reads the winner's key), so a
// client never sees the host key change from one node to the next.
func SharedHostKeys(ctx context.Context, st HostKeyStore) ([]gossh.Signer, error) {
	var signers []gossh.Signer
	for _, name := range HostKeyNames() {
		key := SharedHostKeyPrefix + name
		data, err := readSharedHostKey(ctx, st, key)
		if errors.Is(err, stow.ErrNotFound) {
			fresh, gerr := GenerateHostKey(name)
			if gerr != nil {
				return nil, gerr
			}
			_, cerr := st.Create(ctx, key, bytes.NewReader(fresh))
			if cerr != nil && !errors.Is(cerr, stow.ErrConflict) {
				return nil, fmt.Errorf("sshd: store host key: %w", cerr)
			}
			// Won or lost, the stored key is the one every node uses.
			data, err = readSharedHostKey(ctx, st, key)
		}
		if err != nil {
			return nil, fmt.Errorf("sshd: read host key from the store: %w", err)
		}
		s, err := ParseHostKey(key, data)
		if err != nil {
			return nil, err
		}
		signers = append(signers, s)
	}
	return signers, nil
}

func readSharedHostKey(ctx context.Context, st HostKeyStore, key string) ([]byte, error) {
	rc, _, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	data, err := io.ReadAll(io.LimitReader(rc, maxHostKeySize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxHostKeySize {
		return nil, fmt.Errorf("%s is larger than %d bytes, not a host key", key, maxHostKeySize)
	}
	return data, nil
}
