package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/contextd/contextd/cmd/internal/daemon"
)

// The quic workload's server is this same executable started again with
// quicRoleEnv=quicRoleServer in its environment; init dispatches on it
// before main (or a test binary's main) runs.
const (
	quicRoleEnv    = "CXBENCH_ROLE"
	quicRoleServer = "quic-server"
	// quicSinkEnv names the file the server stores what it reads in
	// (--sink), empty for none.
	quicSinkEnv = "CXBENCH_QUIC_SINK"
	// quicSinkChunk is the piece the server hashes and writes at a time
	// with --sink: a swarm chunk.
	quicSinkChunk = 16 << 10
	quicALPN      = "cxbench"
	// quicServerLimit bounds the server's life should its parent never
	// close its stdin.
	quicServerLimit = 30 * time.Minute
	// quicBufSize is the size of the client's reusable write buffer.
	quicBufSize = 64 << 10
)

// quicConfig is the QUIC configuration of both ends: the flow-control
// windows and version of go-libp2p v0.51.0's QUIC transport
// (p2p/transport/quicreuse/config.go), so that the baseline is what a
// libp2p QUIC stream could reach.
func quicConfig() *quic.Config {
	return &quic.Config{
		MaxStreamReceiveWindow:     10 << 20, // libp2p: 10 MiB
		MaxConnectionReceiveWindow: 15 << 20, // libp2p: 15 MiB
		KeepAlivePeriod:            15 * time.Second,
		Versions:                   []quic.Version{quic.Version1},
	}
}

func init() {
	if os.Getenv(quicRoleEnv) != quicRoleServer {
		return
	}
	if err := quicServer(); err != nil {
		// Canceled: the parent is gone and reports its own error.
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "cxbench quic server:", err)
		}
		os.Exit(1)
	}
	os.Exit(0)
}

// runQUIC measures raw quic-go throughput between two processes on
// loopback: this process dials a server child, opens one stream, writes
// --bytes bytes and closes its write side; the child reads them to the end
// and answers with the count it read. The clock runs from just before the
// dial (so it includes the handshake and opening the stream) until the
// answer arrives. cpu_secs is the CPU time both processes used meanwhile.
// With --sink the child also does the least a fetcher must do with what
// it receives: SHA-256 each 16 KiB piece and write it at its offset in a
// file (unsynced, as the store writes chunk files), which gives the floor
// of a swarm get's cost on the same transport.
func runQUIC(ctx context.Context, args []string) (string, error) {
	fs := flag.NewFlagSet("quic", flag.ContinueOnError)
	n := fs.Int64("bytes", 256<<20, "bytes to send over the stream")
	sink := fs.Bool("sink", false, "the server hashes each 16 KiB piece and writes it to a file")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if *n < 1 || fs.NArg() > 0 {
		return "", errors.New("need --bytes ≥ 1 and no other arguments")
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), quicRoleEnv+"="+quicRoleServer)
	if *sink {
		dir, err := os.MkdirTemp("", "cxbench-quic-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(dir)
		cmd.Env = append(cmd.Env, quicSinkEnv+"="+filepath.Join(dir, "sink"))
	}
	cmd.Stderr = os.Stderr
	// The child exits when its stdin reaches its end: when this process
	// closes the pipe or dies.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading the server's address: %w", err)
	}
	addr = strings.TrimSpace(addr)

	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{quicALPN}}
	buf := make([]byte, quicBufSize)
	for i := range buf {
		buf[i] = byte(i)
	}

	cpu0, err := bothCPU(cmd.Process.Pid)
	if err != nil {
		return "", err
	}
	start := time.Now()
	conn, err := quic.DialAddr(ctx, addr, tlsConf, quicConfig())
	if err != nil {
		return "", err
	}
	defer conn.CloseWithError(0, "")
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return "", err
	}
	for left := *n; left > 0; {
		b := buf
		if left < int64(len(b)) {
			b = b[:left]
		}
		w, err := str.Write(b)
		if err != nil {
			return "", err
		}
		left -= int64(w)
	}
	if err := str.Close(); err != nil {
		return "", err
	}
	var ack [8]byte
	if _, err := io.ReadFull(str, ack[:]); err != nil {
		return "", fmt.Errorf("waiting for the server's count: %w", err)
	}
	secs := time.Since(start).Seconds()
	cpu1, err := bothCPU(cmd.Process.Pid)
	if err != nil {
		return "", err
	}
	if got := int64(binary.BigEndian.Uint64(ack[:])); got != *n {
		return "", fmt.Errorf("the server read %d bytes, want %d", got, *n)
	}
	return fmt.Sprintf("bench=quic bytes=%d sink=%t secs=%.3f MB_per_s=%.2f cpu_secs=%.2f",
		*n, *sink, secs, float64(*n)/secs/1e6, (cpu1 - cpu0).Seconds()), nil
}

// bothCPU returns the CPU time this process and the server have used.
func bothCPU(server int) (time.Duration, error) {
	c, err := daemon.ProcessCPU(os.Getpid())
	if err != nil {
		return 0, err
	}
	s, err := daemon.ProcessCPU(server)
	return c + s, err
}

// quicServer is the child: it listens on 127.0.0.1, prints its address on
// stdout, reads one stream of one connection to its end and answers with
// the number of bytes read (8 bytes, big-endian). It gives up when its
// stdin ends (the parent is gone) or after quicServerLimit.
func quicServer() error {
	ctx, cancel := context.WithTimeout(context.Background(), quicServerLimit)
	defer cancel()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{quicALPN}}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, quicConfig())
	if err != nil {
		return err
	}
	defer ln.Close()
	if _, err := fmt.Println(ln.Addr()); err != nil {
		return err
	}
	conn, err := ln.Accept(ctx)
	if err != nil {
		return err
	}
	defer conn.CloseWithError(0, "")
	str, err := conn.AcceptStream(ctx)
	if err != nil {
		return err
	}
	got, err := readAll(str, os.Getenv(quicSinkEnv))
	if err != nil {
		return err
	}
	var ack [8]byte
	binary.BigEndian.PutUint64(ack[:], uint64(got))
	if _, err := str.Write(ack[:]); err != nil {
		return err
	}
	if err := str.Close(); err != nil {
		return err
	}
	// Wait for the client to close the connection (or go away), so that
	// the count is not lost with the connection's state.
	select {
	case <-conn.Context().Done():
	case <-ctx.Done():
	}
	return nil
}

// readAll reads r to its end and returns the count. With a sink path it
// hashes each quicSinkChunk piece with SHA-256 and writes it at its offset
// in a new file there.
func readAll(r io.Reader, sink string) (int64, error) {
	if sink == "" {
		return io.Copy(io.Discard, r)
	}
	f, err := os.Create(sink)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, quicSinkChunk)
	var got int64
	for {
		k, err := io.ReadFull(r, buf)
		if k > 0 {
			sum := sha256.Sum256(buf[:k])
			runtime.KeepAlive(sum)
			if _, err := f.WriteAt(buf[:k], got); err != nil {
				return got, err
			}
			got += int64(k)
		}
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return got, nil
		case err != nil:
			return got, err
		}
	}
}

// selfSigned makes a throwaway self-signed ECDSA P-256 certificate (the
// client does not verify it: only the transport is measured).
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "cxbench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
