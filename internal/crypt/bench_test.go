package crypt_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"

	"voltar/internal/crypt"
)

// BenchmarkEncrypt is age's cost per stored byte on one core (the
// compressor's output goroutine runs it).
func BenchmarkEncrypt(b *testing.B) {
	_, rcpt := newKey(b, 0o600)
	r, err := crypt.NewRecipients([]string{rcpt}, nil)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 8<<20) // one zstd frame's worth
	rand.Read(buf)
	b.SetBytes(int64(len(buf)))
	w, _ := r.Encrypt(io.Discard)
	for b.Loop() {
		w.Write(buf)
	}
	w.Close()
}

// BenchmarkDecrypt is the same for verify and restore.
func BenchmarkDecrypt(b *testing.B) {
	key, rcpt := newKey(b, 0o600)
	r, _ := crypt.NewRecipients([]string{rcpt}, nil)
	ids, err := crypt.LoadIdentities(key)
	if err != nil {
		b.Fatal(err)
	}
	plain := make([]byte, 64<<20)
	rand.Read(plain)
	var enc bytes.Buffer
	w, _ := r.Encrypt(&enc)
	w.Write(plain)
	w.Close()
	b.SetBytes(int64(len(plain)))
	for b.Loop() {
		d, err := ids.Decrypt(bytes.NewReader(enc.Bytes()))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, d); err != nil {
			b.Fatal(err)
		}
	}
}
