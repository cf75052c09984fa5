package testkit

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// WeedVersion is the SeaweedFS module version .ci/seaweedfs builds; the
// cached binary's name carries it, so a bump there needs one here.
const WeedVersion = "v0.0.0-20261109003541-7506e5f91cd6"

// S3 is a running S3 endpoint with one empty bucket and credentials that
// SigV4-sign requests for it.
type S3 struct {
	Endpoint  string // http://127.0.0.1:PORT
	Bucket    string
	Region    string
	AccessKey string
	SecretKey string
}

// WeedPath is where the `weed` binary is expected: $SOKOBAN_WEED, else the
// cache .ci/seaweedfs fills ($SOKOBAN_CACHE, else $XDG_CACHE_HOME or
// ~/.cache, then /sokoban).
func WeedPath() string {
	if p := os.Getenv("SOKOBAN_WEED"); p != "" {
		return p
	}
	cache := os.Getenv("SOKOBAN_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "sokoban")
	}
	return filepath.Join(cache, "weed-"+WeedVersion)
}

// StartSeaweedFS runs a single-process SeaweedFS (`weed mini`: master,
// volume, filer, S3 gateway and an admin server without UI; no WebDAV, IAM,
// Iceberg or Lance) bound to 127.0.0.1 on
// free ports, with its data in a fresh temporary directory, and returns once
// a bucket exists and accepts a write. Start-up takes about 5s (most of it a
// fixed wait in the filer), so a test that needs several stores should share
// one server and give each store its own prefix. The process group is killed at the
// end of the test. SeaweedFS is used rather than gofakes3 because it
// implements S3's conditional writes (If-None-Match, If-Match on PUT).
func StartSeaweedFS(t testing.TB) *S3 {
	t.Helper()
	bin := WeedPath()
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("testkit: no SeaweedFS binary at %s: run `make deps` (or .ci/seaweedfs, which builds and caches it), or set SOKOBAN_WEED", bin)
	}
	dir := t.TempDir()
	// Unix sockets are limited to about 108 bytes of path, which a long test
	// name in t.TempDir can pass; SeaweedFS's default puts them in /tmp under
	// fixed names, where parallel servers would collide.
	sockDir, err := os.MkdirTemp("", "weed")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })

	s := &S3{
		Bucket:    "sokoban-test",
		Region:    "us-east-1",
		AccessKey: "sokoban-test-access",
		SecretKey: "sokoban-test-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36),
	}
	cfg := fmt.Sprintf(`{"identities":[{"name":"sokoban","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]}]}`,
		s.AccessKey, s.SecretKey)
	cfgPath := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	ports := freePorts(t, 10)
	port := func(i int) string { return strconv.Itoa(ports[i]) }
	s.Endpoint = "http://127.0.0.1:" + port(6)
	// weed mini rather than weed server: it skips the filer's wait for
	// peers that a fresh single-node cluster cannot have (about 7s).
	args := []string{"mini",
		"-dir=" + dir,
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port=" + port(0), "-master.port.grpc=" + port(1),
		"-volume.port=" + port(2), "-volume.port.grpc=" + port(3),
		"-filer.port=" + port(4), "-filer.port.grpc=" + port(5),
		"-filer.localSocket=" + filepath.Join(sockDir, "filer.sock"),
		"-s3.port=" + port(6), "-s3.port.grpc=" + port(7),
		"-s3.localSocket=" + filepath.Join(sockDir, "s3.sock"),
		"-s3.config=" + cfgPath, "-s3.iam=false",
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		// The admin server cannot be turned off in mini, only its UI.
		"-admin.ui=false", "-admin.port=" + port(8), "-admin.port.grpc=" + port(9), "-admin.port.legacy=0",
		"-webdav=false", "-metricsPort=0",
		// Small volumes and few of them: the data is a few records.
		"-master.volumeSizeLimitMB=64", "-volume.max=4",
		"-bucket=" + s.Bucket,
	}
	// gRPC's Unix sockets have fixed names in /tmp, one per gRPC port
	// (SeaweedFS has no flag for them); a killed server leaves them behind.
	for _, svc := range []struct {
		name string
		port int
	}{{"master", ports[1]}, {"volume", ports[3]}, {"filer", ports[5]}, {"s3", ports[7]}, {"admin", ports[9]}} {
		sock := fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", svc.name, svc.port)
		t.Cleanup(func() { _ = os.Remove(sock) })
	}
	var logBuf lockedBuffer
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = &logBuf
	cmd.Stderr = &logBuf
	// Its own process group so cleanup kills everything it started, and
	// Pdeathsig so a test binary killed by its timeout leaves no server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testkit: start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("seaweedfs log:\n%s", logBuf.String())
		}
	})

	client := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Ready means the bucket could be made and holds an object: that needs
	// the master, a volume, the filer and the S3 gateway with our identity.
	var last error
	for {
		last = s.probe(ctx, client)
		if last == nil {
			return s
		}
		select {
		case <-exited:
			t.Fatalf("testkit: seaweedfs exited before it was ready (%v); log:\n%s", last, logBuf.String())
		case <-ctx.Done():
			t.Fatalf("testkit: seaweedfs not ready: %v; log:\n%s", last, logBuf.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Client is an S3 client for the endpoint, signing with the credentials.
func (s *S3) Client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint:     aws.String(s.Endpoint),
		Region:           s.Region,
		UsePathStyle:     true,
		Credentials:      credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		RetryMaxAttempts: 1,
	})
}

func (s *S3) probe(ctx context.Context, c *s3.Client) error {
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
			return fmt.Errorf("create bucket: %w", err)
		}
	}
	key := aws.String(".testkit-probe")
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: key, Body: bytes.NewReader([]byte("ok"))}); err != nil {
		return fmt.Errorf("put probe: %w", err)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.Bucket), Key: key}); err != nil {
		return fmt.Errorf("delete probe: %w", err)
	}
	return nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// All are held open until the last is chosen, so the kernel hands out n
// different ones; another process could still take one before SeaweedFS
// binds it, which shows up as a start failure with the log.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testkit: free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
