package sshd

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	gossh "golang.org/x/crypto/ssh"
)

// hostKeyFiles are generated under DIR/host_keys on first start.
var hostKeyFiles = []struct {
	name string
	gen  func() (any, error)
}{
	{"ssh_host_ed25519_key", func() (any, error) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}},
	{"ssh_host_rsa_key", func() (any, error) { return rsa.GenerateKey(rand.Reader, 3072) }},
}

// LoadHostKeys reads the given host key files, or, when none are given, loads
// the keys under dir, generating any that are missing (mode 0600, OpenSSH format).
func LoadHostKeys(dir string, files []string) ([]gossh.Signer, error) {
	if len(files) == 0 {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("sshd: host key dir: %w", err)
		}
		for _, hk := range hostKeyFiles {
			p := filepath.Join(dir, hk.name)
			if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
				if err := generateHostKey(p, hk.gen); err != nil {
					return nil, err
				}
			}
			files = append(files, p)
		}
	}
	var signers []gossh.Signer
	for _, p := range files {
		s, err := readHostKey(p)
		if err != nil {
			return nil, err
		}
		signers = append(signers, s)
	}
	return signers, nil
}

// HostKeyNames are the host keys every node has, by file name.
func HostKeyNames() []string {
	names := make([]string, len(hostKeyFiles))
	for i, hk := range hostKeyFiles {
		names[i] = hk.name
	}
	return names
}

// GenerateHostKey returns a new private host key of the kind name stands for
// (one of HostKeyNames), in OpenSSH PEM form. Cluster nodes that keep their
// host keys in stow use it and ParseHostKey.
func GenerateHostKey(name string) ([]byte, error) {
	for _, hk := range hostKeyFiles {
		if hk.name == name {
			return encodeHostKey(hk.gen)
		}
	}
	return nil, fmt.Errorf("sshd: no host key kind %q", name)
}

func encodeHostKey(gen func() (any, error)) ([]byte, error) {
	key, err := gen()
	if err != nil {
		return nil, fmt.Errorf("sshd: generate host key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(key, "sokoban host key")
	if err != nil {
		return nil, fmt.Errorf("sshd: encode host key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

func generateHostKey(path string, gen func() (any, error)) error {
	data, err := encodeHostKey(gen)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("sshd: write host key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("sshd: write host key: %w", err)
	}
	return nil
}

func readHostKey(path string) (gossh.Signer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("sshd: host key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("sshd: host key %s is readable by others (mode %o); chmod 600 it", path, st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sshd: host key: %w", err)
	}
	return ParseHostKey(path, data)
}

// ParseHostKey turns a PEM private key into a host key signer; name says
// where it came from, for errors. RSA keys sign with SHA-2 only.
func ParseHostKey(name string, data []byte) (gossh.Signer, error) {
	s, err := gossh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("sshd: host key %s: %w", name, err)
	}
	if s.PublicKey().Type() == gossh.KeyAlgoRSA {
		// Offer RSA host keys only with SHA-2 signatures.
		as, ok := s.(gossh.AlgorithmSigner)
		if !ok {
			return nil, fmt.Errorf("sshd: host key %s cannot sign with rsa-sha2", name)
		}
		return gossh.NewSignerWithAlgorithms(as, []string{gossh.KeyAlgoRSASHA512, gossh.KeyAlgoRSASHA256})
	}
	return s, nil
}
