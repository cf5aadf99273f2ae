package dukat_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/dukat-dev/dukat/clients/go"
)

// TestMain starts one daemon for the examples, which find it as a program would: through
// $DUKAT_ADDRESS, by dialling "". Each test starts daemons of its own.
func TestMain(m *testing.M) {
	d, err := launch(flags("--allow-exec"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv(dukat.AddressVariable, d.Address)
	code := m.Run()
	d.close()
	os.Exit(code)
}
