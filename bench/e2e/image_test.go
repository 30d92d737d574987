package e2e

// This file holds the container image the runtime tests run: busybox-static
// in an otherwise empty root, as a tarball for `podman import` and
// `docker import` (no registry is reachable where the tests run).

import (
	"archive/tar"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// imageApplets are the busybox applets the runtime tests call inside a
// container.
var imageApplets = []string{"sh", "ping", "nc", "sleep", "ip", "cat", "echo", "nslookup", "hostname", "ls", "true"}

// busyboxImage writes a root file system tarball holding /bin/busybox
// (from busybox-static) and its applet links, and returns its path.
func busyboxImage(t *testing.T) string {
	t.Helper()
	src := needTool(t, "busybox", "busybox-static")
	bin, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "busybox.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := tar.NewWriter(f)
	for _, d := range []string{"bin/", "etc/", "proc/", "sys/", "dev/", "tmp/", "root/"} {
		if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bin); err != nil {
		t.Fatal(err)
	}
	for _, a := range imageApplets {
		if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// imageName names the image a test imports, unique to this process.
func imageName() string { return fmt.Sprintf("ovlsw-e2e-busybox:%d", os.Getpid()) }
