package testkit_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/sokoban-deploy/sokoban/internal/testkit"
)

// The server StartSeaweedFS returns signs in with its credentials only, and
// honours If-None-Match: the two things the S3 store's tests rely on.
func TestStartSeaweedFS(t *testing.T) {
	s := testkit.StartSeaweedFS(t)
	ctx := context.Background()
	c := s.Client()
	put := func(c *s3.Client, body string, noneMatch bool) error {
		in := &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String("k"), Body: bytes.NewReader([]byte(body))}
		if noneMatch {
			in.IfNoneMatch = aws.String("*")
		}
		_, err := c.PutObject(ctx, in)
		return err
	}
	if err := put(c, "one", true); err != nil {
		t.Fatal(err)
	}
	var apiErr smithy.APIError
	if err := put(c, "two", true); !errors.As(err, &apiErr) || apiErr.ErrorCode() != "PreconditionFailed" {
		t.Fatalf("second create-only PUT: %v, want PreconditionFailed", err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Body)
	_ = out.Body.Close()
	if string(b) != "one" {
		t.Fatalf("content %q after refused PUT, want %q", b, "one")
	}

	wrong := s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint), Region: s.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, "not-the-secret", ""),
	})
	if err := put(wrong, "three", false); err == nil {
		t.Fatal("PUT with a wrong secret succeeded: the server does not check signatures")
	}
}
