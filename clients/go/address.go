package dukat

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// AddressVariable names the environment variable Dial reads when given no address; the
// Python client's AsyncAssistant reads the same.
const AddressVariable = "DUKAT_ADDRESS"

// SocketName is the file name of dukatd's default socket.
const SocketName = "dukatd.sock"

// DefaultAddress is where dukatd listens when started without --listen:
// unix:dukatd.sock in $RUNTIME_DIRECTORY (systemd's), else in $XDG_RUNTIME_DIR, else in the
// private /tmp/dukatd-$UID/ (dukat.defaults.default_address). Relative directories in those
// variables are ignored, and of a colon-separated list only the first counts.
func DefaultAddress() string {
	directory := firstAbsolute(os.Getenv("RUNTIME_DIRECTORY"))
	if directory == "" {
		directory = firstAbsolute(os.Getenv("XDG_RUNTIME_DIR"))
	}
	if directory == "" {
		directory = fmt.Sprintf("/tmp/dukatd-%d", os.Getuid())
	}
	return "unix:" + filepath.Join(directory, SocketName)
}

func firstAbsolute(value string) string {
	first, _, _ := strings.Cut(value, ":")
	if filepath.IsAbs(first) {
		return first
	}
	return ""
}

// target is the gRPC target of a daemon address: "unix:/path" (a relative path made
// absolute, as dukatd does) or "host:port"; "" is $DUKAT_ADDRESS, else DefaultAddress().
func target(address string) (string, error) {
	address = strings.TrimSpace(address)
	if address == "" {
		address = strings.TrimSpace(os.Getenv(AddressVariable))
	}
	if address == "" {
		address = DefaultAddress()
	}
	if rest, ok := strings.CutPrefix(address, "unix:"); ok {
		return unixTarget(address, rest)
	}
	if strings.HasPrefix(address, "unix-abstract:") {
		return "", fmt.Errorf("dukat: abstract unix sockets are not supported (dukatd listens on none): %q", address)
	}
	if info, err := os.Stat(address); err == nil && info.Mode().Type() == fs.ModeSocket {
		return "", fmt.Errorf("dukat: %q is a unix socket; write unix:%s", address, address)
	}
	host, port, err := net.SplitHostPort(address)
	if number, portErr := strconv.Atoi(port); err != nil || portErr != nil || host == "" || number < 0 || number > 65535 {
		return "", fmt.Errorf("dukat: address must be unix:/path/to/dukatd.sock or host:port, not %q", address)
	}
	return "dns:///" + address, nil
}

func unixTarget(address, path string) (string, error) {
	if strings.HasPrefix(path, "//") {
		// gRPC's URI form unix:///abs/path; unix://name would name an authority, not a path.
		if !strings.HasPrefix(path, "///") {
			return "", fmt.Errorf("dukat: write unix:/absolute/path or unix:///absolute/path, not %q", address)
		}
		path = path[2:]
	}
	if path == "" {
		return "", fmt.Errorf("dukat: unix: needs a path, like unix:/run/dukatd/dukatd.sock")
	}
	absolute, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("dukat: %q: %w", address, err)
	}
	return "unix:" + absolute, nil
}
