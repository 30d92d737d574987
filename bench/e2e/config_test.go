package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EConfigService runs `ovlsw up --config FILE` as systemd would: it
// reports READY=1 on $NOTIFY_SOCKET once its control socket answers, and on
// SIGHUP reads the file again, applying the log level and flood rate and
// logging that a changed bind needs a restart, and keeps running.
func TestE2EConfigService(t *testing.T) {
	_, h1, _ := twoHosts(t)
	bin := ovlswBinary(t)
	dir := t.TempDir()
	sock := socketPath(t, "cfg")
	file := filepath.Join(dir, "ovlsw.yaml")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := "name: cfg\nvni: 42\ntap: ovlcfg\nsocket: " + sock + "\nstate: " + filepath.Join(dir, "state.json") + "\ninsecure: true\n"
	write(base + "bind: " + ul1.Addr().String() + "\nlog-level: info\nflood-rate: 100\n")

	out, err := exec.Command(bin, "up", "--config", file, "--print-config", "--mtu", "1400").CombinedOutput()
	if err != nil {
		t.Fatalf("--print-config: %v\n%s", err, out)
	}
	for _, want := range []string{"\nbind: " + ul1.Addr().String() + "\n", "\nflood-rate: 100\n", "\nvni: 42\n", "\nmtu: 1400\n", "\nsocket: " + sock + "\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--print-config output lacks %q:\n%s", strings.TrimSpace(want), out)
		}
	}

	notifyPath := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	next := func(want string) string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s on NOTIFY_SOCKET: %v", want, err)
		}
		msg := string(buf[:n])
		if !strings.HasPrefix(msg, want) {
			t.Fatalf("NOTIFY_SOCKET got %q, want %s", msg, want)
		}
		return msg
	}

	proc, err := h1.Start(context.Background(), "env", "NOTIFY_SOCKET="+notifyPath, bin, "up", "--config", file)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, ns: h1, proc: proc, socket: sock, tap: "ovlcfg"}
	t.Cleanup(func() { proc.Stop(5 * time.Second) })
	next("READY=1")
	if st := n.status(); st.Node.Name != "cfg" { // answers at once: READY=1 came after the socket
		t.Errorf("status node %q, want cfg", st.Node.Name)
	}

	write(base + "bind: " + ul2.Addr().String() + "\nlog-level: debug\nflood-rate: 5\n")
	if err := proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	next("RELOADING=1")
	next("READY=1")
	waitLog := func(want string) string { // the output pipe may lag the notification
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(proc.Output(), want) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		return proc.Output()
	}
	log := waitLog("configuration reloaded")
	for _, want := range []string{
		`msg="not applied: bind changed; restart to apply"`,
		`changed=flood-rate,log-level`,
		`applied="log level, flood rate (for new ports)"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log after SIGHUP lacks %s:\n%s", want, log)
		}
	}
	if st := n.status(); st.Node.Name != "cfg" {
		t.Errorf("after the reload: status node %q", st.Node.Name)
	}

	// A file that does not parse is logged and changes nothing.
	write(base + "bind: [\n")
	if err := proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	next("RELOADING=1")
	next("READY=1")
	if log := waitLog("reload: configuration not changed"); !strings.Contains(log, "reload: configuration not changed") {
		t.Errorf("bad file on SIGHUP not logged:\n%s", log)
	}

	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	next("STOPPING=1")
	if err := proc.Wait(10 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, proc.Output())
	}
}
