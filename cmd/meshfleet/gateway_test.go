package main

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestGatewayHashPassword(t *testing.T) {
	out, _, err := execute(t, context.Background(), strings.NewReader("correct horse\n"), "gateway", "hash-password")
	if err != nil {
		t.Fatal(err)
	}
	h := strings.TrimSpace(out)
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse")); err != nil {
		t.Fatalf("%q is not the hash of the password: %v", h, err)
	}
	if _, _, err := execute(t, context.Background(), strings.NewReader(""), "gateway", "hash-password"); err == nil || !strings.Contains(err.Error(), "no password") {
		t.Fatalf("empty stdin: %v", err)
	}
}
