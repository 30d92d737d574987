package tap

// Tests of InNetns and NetnsIDOf. They need root and run in a network
// namespace of their own (inNetns, as in tap_linux_test.go), and make
// named namespaces that they remove when they end.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted (by ip
// netns add and netns.NewNamed).
const netnsDir = "/run/netns"

// netnsSeq numbers the named namespaces of this process.
var netnsSeq atomic.Int32

// namedNetns makes a named network namespace, removed when the test ends,
// and returns its path. The name holds the pid, so parallel runs never
// clash.
func namedNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("ovltap-%d-%d", os.Getpid(), netnsSeq.Add(1))
	path := filepath.Join(netnsDir, name)
	t.Cleanup(func() {
		if err := removeNetns(path); err != nil {
			t.Errorf("remove network namespace %s: %v", path, err)
		}
	})
	// NewNamed moves the calling thread into the new namespace: give it a
	// thread of its own, and that back only once it is back where it was
	// (else it ends with the goroutine). A thread left behind would sit
	// in the namespace, which TestInNetns looks for.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			errc <- err // perhaps moved: keep the thread locked
			return
		}
		ns.Close()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("back from %s: %w", name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("new network namespace %s: %v", name, err)
	}
	return path
}

// removeNetns removes the named namespace at path as ip netns del does:
// unmount, then remove the file. What is gone already is no error.
func removeNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func TestInNetns(t *testing.T) {
	inNetns(t)
	path := namedNetns(t)
	want, err := NetnsIDOf(path)
	if err != nil {
		t.Fatal(err)
	}
	here, err := NetnsIDOf("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if want == here || want == (NetnsID{}) {
		t.Fatalf("NetnsIDOf: target %v, this thread's %v; want distinct and non-zero", want, here)
	}

	var got NetnsID
	errFn := errors.New("fn failed")
	err = InNetns(path, func() (err error) {
		got, err = NetnsIDOf("/proc/thread-self/ns/net")
		if err != nil {
			return err
		}
		return errFn
	})
	if !errors.Is(err, errFn) {
		t.Fatalf("InNetns = %v, want fn's error", err)
	}
	if got != want {
		t.Errorf("fn ran in namespace %v, want %v", got, want)
	}
	// InNetns returns once its thread is out of the namespace.
	if tids := threadsIn(t, want); len(tids) > 0 {
		t.Errorf("threads %v are still in %s", tids, path)
	}

	ran := false
	err = InNetns(path+"-none", func() error { ran = true; return nil })
	if err == nil || ran {
		t.Errorf("InNetns of a missing namespace = %v, fn ran %v; want an error, fn not run", err, ran)
	}
}

// threadsIn returns the threads of this process in the namespace id.
func threadsIn(t *testing.T, id NetnsID) []string {
	t.Helper()
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, tid := range tids {
		got, err := NetnsIDOf(filepath.Join("/proc/self/task", tid.Name(), "ns/net"))
		if err == nil && got == id { // err: the thread ended meanwhile
			in = append(in, tid.Name())
		}
	}
	return in
}

func TestNetnsIDOf(t *testing.T) {
	inNetns(t)
	file := filepath.Join(t.TempDir(), "not-a-netns")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		path     func(t *testing.T) string // made by the test
		notExist bool                      // the error must wrap fs.ErrNotExist
	}{
		{"removed namespace", func(t *testing.T) string {
			path := namedNetns(t)
			if _, err := NetnsIDOf(path); err != nil {
				t.Fatalf("before removal: %v", err)
			}
			if err := removeNetns(path); err != nil {
				t.Fatal(err)
			}
			return path
		}, true},
		{"unmounted namespace", func(t *testing.T) string {
			path := namedNetns(t)
			if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			return path
		}, false},
		{"plain file", func(*testing.T) string { return file }, false},
		{"mount namespace", func(*testing.T) string { return "/proc/self/ns/mnt" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path(t)
			id, err := NetnsIDOf(path)
			if err == nil || id != (NetnsID{}) || tc.notExist && !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("NetnsIDOf(%s) = %v, %v; want zero and an error (not exist: %v)", path, id, err, tc.notExist)
			}
			t.Log(err)
		})
	}

	// One namespace, two names: one ID.
	path := namedNetns(t)
	byPath, err := NetnsIDOf(path)
	if err != nil || byPath == (NetnsID{}) {
		t.Fatalf("NetnsIDOf(%s) = %v, %v", path, byPath, err)
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	byFD, err := NetnsIDOf(fmt.Sprintf("/proc/self/fd/%d", int(ns)))
	if err != nil || byFD != byPath {
		t.Errorf("NetnsIDOf through an open fd = %v, %v; want %v, as through its path", byFD, err, byPath)
	}
}
