// h2_upstream: an HTTP/2 upstream for sluice's end-to-end tests, Go's net/http with
// golang.org/x/net/http2 (h2c with prior knowledge, or TLS with ALPN h2), from Debian's
// packages. Built by CMake into the build tree (GO111MODULE=off, GOPATH=/usr/share/gocode).
//
// Run: h2_upstream [-port N] [-tls-cert F -tls-key F [-no-h2]] [-max-streams N] [-name S]
//
//	[-reuseport] [-grace D]
//
// Prints one line "PORT <n>" once listening. On SIGTERM or SIGINT it shuts down gracefully:
// the listener closes, every HTTP/2 connection gets a GOAWAY (http.Server.Shutdown through
// http2.ConfigureServer), requests in flight finish (at most -grace), then it exits 0.
//
// Endpoints (any method unless said):
//
//	/echo            200, the request body back; X-Proto, X-Method, X-Conn (connection id),
//	                 X-Request-Len and X-Got-<Name> for each x-test-* request header
//	/headers         200 JSON: method, path, host, proto, headers (lower-case names), conn
//	/bytes/N         N bytes (a repeating 0..255 pattern), ?chunk=K per write (default 16 KiB),
//	                 ?delay_ms=D between writes, ?cl=0 omits Content-Length
//	/discard         reads the body: JSON {"received": n, "sha256": hex}; ?ms_per_mib=K sleeps
//	                 K ms per MiB read (a slow reader)
//	/trailers        the request body back with trailers X-Checksum (sha256 of the body),
//	                 X-Count (its length) and X-Got-Trailers (the request's trailer names)
//	/status/N        status N (no body for 1xx/204/304; "status N\n" otherwise)
//	/sleep/MS        200 "slept MS\n" after MS milliseconds (or when the request is cancelled)
//	/slow/N          N lines "line-i\n", 100 ms apart, each flushed
//	/stats           JSON {"accepted", "open", "requests", "max_active"} (max_active: most
//	                 requests in flight at once)
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

var (
	accepted, open, requests, active, maxActive int64
	inflight                                    sync.WaitGroup
	name                                        string
	pattern                                     = func() []byte {
		b := make([]byte, 256*256)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}()
)

type connKey struct{}

// countingListener numbers accepted connections and counts the open ones (HTTP/2 connections
// served through h2c are hijacked: http.Server no longer tracks them).
type countingListener struct{ net.Listener }

type countedConn struct {
	net.Conn
	id     int64
	closed int32
}

func (c *countedConn) Close() error {
	if atomic.CompareAndSwapInt32(&c.closed, 0, 1) {
		atomic.AddInt64(&open, -1)
	}
	return c.Conn.Close()
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	atomic.AddInt64(&open, 1)
	return &countedConn{Conn: c, id: atomic.AddInt64(&accepted, 1)}, nil
}

func connID(r *http.Request) int64 {
	if v, ok := r.Context().Value(connKey{}).(int64); ok {
		return v
	}
	return 0
}

func track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		defer inflight.Done()
		atomic.AddInt64(&requests, 1)
		n := atomic.AddInt64(&active, 1)
		defer atomic.AddInt64(&active, -1)
		for {
			m := atomic.LoadInt64(&maxActive)
			if n <= m || atomic.CompareAndSwapInt64(&maxActive, m, n) {
				break
			}
		}
		w.Header().Set("X-Proto", r.Proto)
		w.Header().Set("X-Conn", strconv.FormatInt(connID(r), 10))
		if name != "" {
			w.Header().Set("X-Upstream-Name", name)
		}
		h.ServeHTTP(w, r)
	})
}

func query(r *http.Request, key string, def int) int {
	if v := r.URL.Query().Get(key); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

func tail(r *http.Request, prefix string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, prefix))
	if err != nil {
		return -1
	}
	return n
}

func mux() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Request-Len", strconv.Itoa(len(body)))
		for k, v := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-test-") {
				w.Header().Set("X-Got-"+k[len("X-Test-"):], strings.Join(v, ","))
			}
		}
		w.Write(body)
	})
	m.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		h := map[string]string{}
		for k, v := range r.Header {
			h[strings.ToLower(k)] = strings.Join(v, ",")
		}
		json.NewEncoder(w).Encode(map[string]interface{}{
			"method": r.Method, "path": r.URL.RequestURI(), "host": r.Host, "proto": r.Proto,
			"headers": h, "conn": connID(r), "content_length": r.ContentLength,
		})
	})
	m.HandleFunc("/bytes/", func(w http.ResponseWriter, r *http.Request) {
		n := tail(r, "/bytes/")
		if n < 0 {
			http.Error(w, "bad size", 400)
			return
		}
		chunk := query(r, "chunk", 16384)
		delay := time.Duration(query(r, "delay_ms", 0)) * time.Millisecond
		if query(r, "cl", 1) != 0 {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		fl, _ := w.(http.Flusher)
		for written := 0; written < n; {
			k := chunk
			if n-written < k {
				k = n - written
			}
			for k > 0 {
				p := written % len(pattern)
				m := k
				if len(pattern)-p < m {
					m = len(pattern) - p
				}
				if _, err := w.Write(pattern[p : p+m]); err != nil {
					return
				}
				k -= m
				written += m
			}
			if delay > 0 && written < n {
				if fl != nil {
					fl.Flush()
				}
				select {
				case <-time.After(delay):
				case <-r.Context().Done():
					return
				}
			}
		}
	})
	m.HandleFunc("/discard", func(w http.ResponseWriter, r *http.Request) {
		msPerMiB := query(r, "ms_per_mib", 0)
		h := sha256.New()
		buf := make([]byte, 64*1024)
		total, since := 0, 0
		for {
			k, err := r.Body.Read(buf)
			h.Write(buf[:k])
			total += k
			since += k
			if msPerMiB > 0 && since >= 1<<20 {
				time.Sleep(time.Duration(msPerMiB) * time.Millisecond)
				since -= 1 << 20
			}
			if err != nil {
				break
			}
		}
		json.NewEncoder(w).Encode(map[string]interface{}{
			"received": total, "sha256": hex.EncodeToString(h.Sum(nil))})
	})
	m.HandleFunc("/trailers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum, X-Count, X-Got-Trailers")
		w.WriteHeader(200)
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush() // the head now: no Content-Length, the trailers follow the body
		}
		body, _ := io.ReadAll(r.Body) // request trailers are known once the body is read
		var names []string
		for k := range r.Trailer {
			names = append(names, strings.ToLower(k)+"="+r.Trailer.Get(k))
		}
		sort.Strings(names)
		w.Write(body)
		sum := sha256.Sum256(body)
		w.Header().Set("X-Checksum", hex.EncodeToString(sum[:]))
		w.Header().Set("X-Count", strconv.Itoa(len(body)))
		w.Header().Set("X-Got-Trailers", strings.Join(names, ";"))
	})
	m.HandleFunc("/status/", func(w http.ResponseWriter, r *http.Request) {
		n := tail(r, "/status/")
		if n < 200 || n > 599 {
			http.Error(w, "bad status", 400)
			return
		}
		w.WriteHeader(n)
		if n != 204 && n != 304 {
			fmt.Fprintf(w, "status %d\n", n)
		}
	})
	m.HandleFunc("/sleep/", func(w http.ResponseWriter, r *http.Request) {
		ms := tail(r, "/sleep/")
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "slept %d\n", ms)
	})
	m.HandleFunc("/slow/", func(w http.ResponseWriter, r *http.Request) {
		n := tail(r, "/slow/")
		fl, _ := w.(http.Flusher)
		for i := 0; i < n; i++ {
			if i > 0 {
				select {
				case <-time.After(100 * time.Millisecond):
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "line-%d\n", i)
			if fl != nil {
				fl.Flush()
			}
		}
	})
	m.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]int64{
			"accepted": atomic.LoadInt64(&accepted), "open": atomic.LoadInt64(&open),
			"requests": atomic.LoadInt64(&requests), "max_active": atomic.LoadInt64(&maxActive)})
	})
	return m
}

func listen(port int, reuse bool) (net.Listener, error) {
	lc := net.ListenConfig{}
	if reuse {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", port))
}

func main() {
	port := flag.Int("port", 0, "port (0: any)")
	cert := flag.String("tls-cert", "", "serve TLS with this certificate (PEM)")
	key := flag.String("tls-key", "", "and this key")
	noH2 := flag.Bool("no-h2", false, "with TLS: offer only http/1.1 in ALPN")
	maxStreams := flag.Uint("max-streams", 250, "SETTINGS_MAX_CONCURRENT_STREAMS")
	reuse := flag.Bool("reuseport", false, "listen with SO_REUSEPORT (a restart beside the old)")
	grace := flag.Duration("grace", 20*time.Second, "graceful shutdown budget")
	flag.StringVar(&name, "name", "", "sent as X-Upstream-Name")
	flag.Parse()

	h2s := &http2.Server{MaxConcurrentStreams: uint32(*maxStreams)}
	srv := &http.Server{
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if t, ok := c.(*tls.Conn); ok {
				c = t.NetConn()
			}
			if cc, ok := c.(*countedConn); ok {
				return context.WithValue(ctx, connKey{}, cc.id)
			}
			return ctx
		},
	}
	if *cert != "" {
		srv.Handler = track(mux())
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if *noH2 {
			srv.TLSConfig.NextProtos = []string{"http/1.1"}
			srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		} else if err := http2.ConfigureServer(srv, h2s); err != nil {
			fmt.Fprintln(os.Stderr, "h2_upstream:", err)
			os.Exit(1)
		}
	} else {
		srv.Handler = h2c.NewHandler(track(mux()), h2s)
		// Registers the GOAWAY on Shutdown for the connections h2s serves.
		if err := http2.ConfigureServer(srv, h2s); err != nil {
			fmt.Fprintln(os.Stderr, "h2_upstream:", err)
			os.Exit(1)
		}
	}
	ln, err := listen(*port, *reuse)
	if err != nil {
		fmt.Fprintln(os.Stderr, "h2_upstream:", err)
		os.Exit(1)
	}
	fmt.Printf("PORT %d\n", ln.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()

	done := make(chan struct{})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), *grace)
		defer cancel()
		srv.Shutdown(ctx) // closes the listener, GOAWAY on every HTTP/2 connection
		// Hijacked (h2c) connections are not waited for by Shutdown: the requests are.
		finished := make(chan struct{})
		go func() { inflight.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-ctx.Done():
		}
		// The connections close once their last stream ended (the peer closes them too).
		for atomic.LoadInt64(&open) > 0 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		close(done)
	}()
	lst := countingListener{ln}
	if *cert != "" {
		err = srv.ServeTLS(lst, *cert, *key)
	} else {
		err = srv.Serve(lst)
	}
	if err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "h2_upstream:", err)
		os.Exit(1)
	}
	<-done
}
