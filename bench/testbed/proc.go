// Processes: Run (a command to completion), Start (a long-running process),
// and the Proc handle. Every process the Bed starts, including the ip,
// bridge and ethtool commands it runs itself, is tracked so Close can stop
// whatever is still running.

package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// outputLimit is how much of a Proc's combined output Output keeps (the
	// tail): all of a test's logs, bounded for an hour-long benchmark.
	outputLimit = 1 << 20

	// waitDelay bounds how long Wait waits for output pipes after the
	// process exited or was cancelled, in case a grandchild still holds
	// them open.
	waitDelay = 2 * time.Second

	// killWait is how long Stop waits for a process to disappear after
	// SIGKILL. Only an uninterruptible sleep in the kernel takes longer.
	killWait = 5 * time.Second
)

// A Proc is a process started in a namespace by Start. Its stdout and
// stderr are captured together (see Output). The Bed stops it on Close if it
// is still running. All methods are safe for concurrent use.
type Proc struct {
	cmd     *exec.Cmd
	cmdline string
	out     *tailBuffer // nil for processes started by Run
	done    chan struct{}
	err     error // result of cmd.Wait; valid once done is closed
}

// Run runs `ip netns exec NAME args...` to completion and returns its
// stdout. The error, for a failed start or a non-zero exit, names the
// command line and includes stderr. ctx bounds the run: when it is done the
// process group is killed.
func (n *Netns) Run(ctx context.Context, args ...string) (stdout string, err error) {
	if len(args) == 0 {
		return "", errors.New("testbed: Run: no command")
	}
	return n.bed.run(ctx, n.execArgv(args))
}

// Start starts `ip netns exec NAME args...` and returns without waiting
// for it. The process runs in its own process group, so a Ctrl-C at the
// terminal reaches the harness and not the process; Close (or Stop) ends
// it. When ctx is done the process group is killed; pass
// context.Background() for a process that should live until Stop or Close.
// The process must not daemonize (its output would be lost), although
// Close still kills it when it deletes the namespace.
func (n *Netns) Start(ctx context.Context, args ...string) (*Proc, error) {
	if len(args) == 0 {
		return nil, errors.New("testbed: Start: no command")
	}
	out := &tailBuffer{max: outputLimit}
	p, err := n.bed.start(ctx, n.execArgv(args), out, out)
	if err != nil {
		return nil, err
	}
	p.out = out
	return p, nil
}

func (n *Netns) execArgv(args []string) []string {
	return append([]string{"ip", "netns", "exec", n.Name}, args...)
}

// Pid is the process id (of the command itself: ip netns exec execs it).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and its output is complete.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether Done is closed, without waiting.
func (p *Proc) Exited() bool { return isDone(p.done) }

// Output returns the process's combined stdout and stderr so far (the last
// 1 MiB), for diagnostics.
func (p *Proc) Output() string {
	if p.out == nil {
		return ""
	}
	return p.out.String()
}

// Signal sends sig to the process (not its group). It returns
// os.ErrProcessDone if the process has already exited.
func (p *Proc) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// Wait waits up to timeout for the process to exit. It returns nil for exit
// status 0, an error wrapping the *exec.ExitError otherwise, and an error
// wrapping os.ErrDeadlineExceeded if the process is still running.
func (p *Proc) Wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		return fmt.Errorf("testbed: %s: still running after %v: %w", p.cmdline, timeout, os.ErrDeadlineExceeded)
	}
	if p.err != nil {
		return fmt.Errorf("testbed: %s: %w", p.cmdline, p.err)
	}
	return nil
}

// Stop sends SIGTERM to the process group, waits up to grace for the
// process to exit, then sends SIGKILL. It returns an error only if the
// process is still running after that; the exit status is left to Wait.
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	pid := p.Pid()
	_ = syscall.Kill(-pid, syscall.SIGTERM) // ESRCH: exited meanwhile
	if _ = p.Wait(grace); isDone(p.done) {
		return nil
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	if err := p.Wait(killWait); errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return nil
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// start starts argv as a tracked process. It fails with ErrClosed once
// Close has started, so nothing is created behind Close's back.
func (b *Bed) start(ctx context.Context, argv []string, stdout, stderr io.Writer) (*Proc, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: Close and ctx kill the command and its
		// children together, and terminal signals skip it.
		Setpgid: true,
		// If the harness dies without Close, take the process along. The
		// signal fires when the starting OS thread exits; Go keeps threads
		// alive unless a goroutine exits while locked to one, and the
		// package never starts processes from a locked thread.
		Pdeathsig: syscall.SIGKILL,
	}
	cmd.Cancel = func() error {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return nil
	}
	cmd.WaitDelay = waitDelay
	p := &Proc{cmd: cmd, cmdline: strings.Join(argv, " "), done: make(chan struct{})}

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("testbed: %s: %w", p.cmdline, ErrClosed)
	}
	if err := cmd.Start(); err != nil {
		b.mu.Unlock()
		return nil, fmt.Errorf("testbed: %s: %w", p.cmdline, err)
	}
	b.procs[p] = struct{}{}
	b.mu.Unlock()

	go func() {
		p.err = cmd.Wait()
		b.mu.Lock()
		delete(b.procs, p)
		b.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// run runs argv as a tracked process to completion.
func (b *Bed) run(ctx context.Context, argv []string) (string, error) {
	var stdout, stderr bytes.Buffer
	p, err := b.start(ctx, argv, &stdout, &stderr)
	if err != nil {
		return "", err
	}
	<-p.done // Wait has finished copying, so the buffers are complete
	if p.err != nil {
		return stdout.String(), cmdError(ctx, p.cmdline, p.err, stderr.String())
	}
	return stdout.String(), nil
}

// setup runs one of the package's own configuration commands, bounded by
// cmdTimeout.
func (b *Bed) setup(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	return b.run(ctx, argv)
}

// runUntracked runs argv outside the Bed's process tracking; Close uses it
// for teardown, after it has stopped tracking new processes.
func runUntracked(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = waitDelay
	if err := cmd.Run(); err != nil {
		return stdout.String(), cmdError(ctx, strings.Join(argv, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func cmdError(ctx context.Context, cmdline string, err error, stderr string) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = fmt.Errorf("%w (%w)", err, ctxErr)
	}
	if s := strings.TrimSpace(stderr); s != "" {
		return fmt.Errorf("testbed: %s: %w: %s", cmdline, err, s)
	}
	return fmt.Errorf("testbed: %s: %w", cmdline, err)
}

// tailBuffer is an io.Writer that keeps the last max bytes written.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2*t.max { // trim rarely: amortised O(1) per byte
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.b
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	return string(b)
}
