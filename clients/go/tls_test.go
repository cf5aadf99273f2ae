package dukat_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dukat-dev/dukat/clients/go"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, PEM, into dir; and returns a
// pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dukatd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for file, block := range map[string]*pem.Block{
		certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	certificate, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(certificate)
	return certFile, keyFile, roots
}

func TestWithTLSSpeaksTLSToATCPDaemon(t *testing.T) {
	certFile, keyFile, roots := selfSigned(t, t.TempDir())
	address := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	newDaemon(t, flags("--listen", address, "--tls-cert-file", certFile, "--tls-key-file", keyFile))
	ctx := testContext(t)
	job := dukat.Job(dukat.Dispatch("t", "q", nil))
	quick := dukat.WithReconnect(dukat.Reconnect{Multiplier: 1})

	secure, err := dukat.Dial(ctx, address, dukat.WithTLS(&tls.Config{RootCAs: roots}))
	if err != nil {
		t.Fatal(err)
	}
	defer secure.Close()
	if _, err := secure.Submit(ctx, job); err != nil {
		t.Fatalf("over TLS: %v", err)
	}

	plain, err := dukat.Dial(ctx, address, quick)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Submit(ctx, job); !errors.Is(err, dukat.ErrUnavailable) {
		t.Fatalf("plaintext to a TLS port: %v, want UNAVAILABLE", err)
	}
}
