package testkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// WeedVersion is the SeaweedFS module version .ci/seaweedfs builds.
const WeedVersion = "v0.0.0-20261109003541-7506e5f91cd6"

// S3 is a SeaweedFS S3 endpoint on loopback, with one bucket and one
// identity, for one test.
type S3 struct {
	Endpoint  string // http://127.0.0.1:PORT
	Bucket    string
	Region    string
	AccessKey string
	SecretKey string
}

// WeedPath is the cached weed binary: $SOKOBAN_WEED, else where .ci/seaweedfs
// caches it.
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

// StartSeaweedFS runs `weed mini` (master, volume, filer and S3 in one
// process) bound to 127.0.0.1 on free ports, with its data in a temporary
// directory, and stops its whole process group when the test ends. It is the
// S3-protocol server of the tests that need conditional writes, which
// gofakes3 does not implement. A missing binary fails the test loudly.
func StartSeaweedFS(t testing.TB) *S3 {
	t.Helper()
	bin := WeedPath()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("SeaweedFS's weed is not at %s (%v): run `make deps` (or .ci/seaweedfs) to build it once", bin, err)
	}
	dir := t.TempDir()
	s := &S3{Bucket: "sokoban-test", Region: "us-east-1", AccessKey: "sokobantest", SecretKey: "sokobantestsecret"}
	conf := fmt.Sprintf(`{"identities":[{"name":"sokoban","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]}]}`, s.AccessKey, s.SecretKey)
	if err := os.WriteFile(filepath.Join(dir, "s3.json"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ports := FreePorts(t, 12)
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	s.Endpoint = "http://127.0.0.1:" + p(0)
	cmd := exec.CommandContext(context.Background(), bin, "mini", "-dir="+filepath.Join(dir, "data"),
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-s3.port="+p(0), "-s3.port.grpc="+p(1),
		"-master.port="+p(2), "-master.port.grpc="+p(3),
		"-volume.port="+p(4), "-volume.port.grpc="+p(5),
		"-filer.port="+p(6), "-filer.port.grpc="+p(7),
		"-metricsPort="+p(8), "-s3.metricsPort="+p(9), "-debug.port="+p(10),
		"-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
		"-admin.ui=false", "-admin.port="+p(11), "-admin.port.legacy=0",
		"-master.telemetry=false",
		"-s3.config="+filepath.Join(dir, "s3.json"), "-bucket="+s.Bucket)
	cmd.Dir = dir
	logf, err := os.Create(filepath.Join(dir, "weed.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start weed: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		_ = logf.Close()
	})
	// Ready when the S3 port answers and the bucket exists: an unsigned
	// request to it is refused with 403, a missing one would be 404.
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "weed.log"))
			t.Fatalf("weed exited before it was ready:\n%s", tail(log, 4000))
		default:
		}
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, s.Endpoint+"/"+s.Bucket, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusOK) && s.createBucket() == nil {
				return s
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "weed.log"))
			t.Fatalf("weed not ready after 90s:\n%s", tail(log, 4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// createBucket makes sure the bucket exists: -bucket alone left GETs of
// missing keys answering NoSuchBucket until the first object was written.
func (s *S3) createBucket() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint), Region: s.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
		return err
	}
	_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.Bucket)})
	return err
}

// FreePorts returns n distinct loopback TCP ports that were free a moment ago.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var out []int
	for range n {
		var lc net.ListenConfig
		l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		addr, ok := l.Addr().(*net.TCPAddr)
		if !ok {
			t.Fatalf("listener address %v is not TCP", l.Addr())
		}
		out = append(out, addr.Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return out
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
