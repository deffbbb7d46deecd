// grpc_upstream: the gRPC app behind the proxies in bench/run.sh's grpc scenario.
//
// A grpc-go server (Debian's golang-google-grpc-dev, no code generation) with one unary method,
// /sluice.bench.Bench/Unary, whose messages are raw bytes (a codec that passes them through; no
// protobuf): a call whose request message is exactly -req-bytes long gets -resp-bytes back with
// status OK; any other request gets INVALID_ARGUMENT. Cleartext HTTP/2 with prior knowledge (h2c)
// on -listen, and optionally on a Unix socket (-unix). -stats serves, over HTTP/1.1, the number
// of calls answered OK and refused since start ("ok N bad M"): run.sh compares it with what
// h2load counted, because h2load cannot see grpc-status (it is in the trailers).
//
// On SIGTERM it stops gracefully (GracefulStop: GOAWAY, the calls accepted finish), so that with
// -reuseport a new instance started beside it takes over the port without a failed call
// (tests/e2e/test_grpc.py restarts it under load).
//
// Build (nothing downloaded): GOPATH=/usr/share/gocode GO111MODULE=off go build -o X ./bench/grpc_upstream
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rawCodec passes messages through as bytes: requests decode into *[]byte, responses are []byte.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	switch m := v.(type) {
	case []byte:
		return m, nil
	case *[]byte:
		return *m, nil
	}
	return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*p = append((*p)[:0], data...)
	return nil
}

func (rawCodec) String() string { return "raw" }

var callsOK, callsBad uint64

func main() {
	listen := flag.String("listen", "127.0.0.1:50051", "TCP address for h2c (empty: none)")
	unixPath := flag.String("unix", "", "also listen on this Unix socket path (h2c, mode 0666)")
	stats := flag.String("stats", "", "HTTP/1.1 address for the call counters (empty: none)")
	reqBytes := flag.Int("req-bytes", 32, "expected request message length")
	respBytes := flag.Int("resp-bytes", 32, "response message length")
	reuse := flag.Bool("reuseport", false, "listen with SO_REUSEPORT (a restart beside the old)")
	flag.Parse()

	resp := make([]byte, *respBytes)
	for i := range resp {
		resp[i] = byte('a' + i%26)
	}
	want := *reqBytes
	unary := func(srv interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
		var req []byte
		if err := dec(&req); err != nil {
			atomic.AddUint64(&callsBad, 1)
			return nil, err
		}
		if len(req) != want {
			atomic.AddUint64(&callsBad, 1)
			return nil, status.Errorf(codes.InvalidArgument, "request message is %d bytes, expected %d", len(req), want)
		}
		atomic.AddUint64(&callsOK, 1)
		return resp, nil
	}
	desc := grpc.ServiceDesc{
		ServiceName: "sluice.bench.Bench",
		HandlerType: (*interface{})(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Unary", Handler: unary}},
		Metadata:    "bench",
	}
	srv := grpc.NewServer(grpc.CustomCodec(rawCodec{}))
	srv.RegisterService(&desc, struct{}{})

	var lis []net.Listener
	if *listen != "" {
		lc := net.ListenConfig{}
		if *reuse {
			lc.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				if err := c.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
				}); err != nil {
					return err
				}
				return serr
			}
		}
		l, err := lc.Listen(context.Background(), "tcp", *listen)
		if err != nil {
			log.Fatalf("listen %s: %v", *listen, err)
		}
		lis = append(lis, l)
	}
	if *unixPath != "" {
		os.Remove(*unixPath)
		l, err := net.Listen("unix", *unixPath)
		if err != nil {
			log.Fatalf("listen unix:%s: %v", *unixPath, err)
		}
		// Any local user may connect (nginx's worker runs as www-data when started by root).
		if err := os.Chmod(*unixPath, 0o666); err != nil {
			log.Fatalf("chmod %s: %v", *unixPath, err)
		}
		lis = append(lis, l)
	}
	if len(lis) == 0 {
		log.Fatal("nothing to listen on (-listen or -unix)")
	}
	if *stats != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "ok %d bad %d\n", atomic.LoadUint64(&callsOK), atomic.LoadUint64(&callsBad))
		})
		l, err := net.Listen("tcp", *stats)
		if err != nil {
			log.Fatalf("listen %s: %v", *stats, err)
		}
		log.Printf("grpc_upstream: stats on %s", l.Addr())
		go func() { log.Fatal(http.Serve(l, mux)) }()
	}
	for _, l := range lis {
		go func(l net.Listener) {
			if err := srv.Serve(l); err != nil {
				log.Fatalf("serve %s: %v", l.Addr(), err)
			}
		}(l)
		log.Printf("grpc_upstream: h2c on %s %s", l.Addr().Network(), l.Addr())
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	srv.GracefulStop()
	if *unixPath != "" {
		os.Remove(*unixPath)
	}
}
