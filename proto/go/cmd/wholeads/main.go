// Command wholeads asks bullyproof nodes who leads, over the generated Go client.
//
//	wholeads TLS ADDR [ADDR...]             GetLeader on each address (1 s deadline each), one JSON line per node
//	wholeads TLS -watch [-count N] ADDR     stream WatchLeader from the first address, one JSON line per event,
//	                                        until interrupted or N events were printed
//
// TLS is -cacert ca.pem -cert client.pem -key client.key [-servername member.bullyproof] (mutual TLS
// with files from `bullyproof certs init`), or -insecure for a cluster started with --insecure.
//
// Exit status: 0 ok, 1 an RPC failed, 2 usage, 3 the server does not implement the call.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "bullyproof/proto/go/bullyproofv1"
)

const getLeaderDeadline = time.Second

// line is what wholeads prints for each answer: the answering node's view of the leader.
type line struct {
	Addr   string `json:"addr"`
	Node   uint32 `json:"node"`
	Leader uint32 `json:"leader"`
	Epoch  uint64 `json:"epoch"`
	Known  bool   `json:"known"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("wholeads", flag.ContinueOnError)
	flags.SetOutput(stderr)
	watch := flags.Bool("watch", false, "stream WatchLeader from the first address")
	count := flags.Int("count", 0, "with -watch: stop after N events (0 = until interrupted)")
	caFile := flags.String("cacert", "", "the cluster CA's certificate (PEM)")
	certFile := flags.String("cert", "", "this client's certificate (PEM)")
	keyFile := flags.String("key", "", "its private key (PEM)")
	serverName := flags.String("servername", "member.bullyproof", "the name to verify in the node's certificate")
	plaintext := flags.Bool("insecure", false, "plaintext, for a cluster started with --insecure")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: wholeads (-cacert F -cert F -key F | -insecure) [-watch [-count N]] ADDR [ADDR...]")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if flags.NArg() == 0 || *count < 0 {
		flags.Usage()
		return 2
	}
	var err error
	creds := insecure.NewCredentials()
	switch {
	case *plaintext && (*caFile != "" || *certFile != "" || *keyFile != ""):
		fmt.Fprintln(stderr, "wholeads: -insecure and certificate files exclude each other")
		return 2
	case !*plaintext:
		if creds, err = mutualTLS(*caFile, *certFile, *keyFile, *serverName); err != nil {
			fmt.Fprintf(stderr, "wholeads: %v\n", err)
			return 2
		}
	default:
		fmt.Fprintln(stderr, "wholeads: warning: -insecure: plaintext, the nodes are not authenticated")
	}
	dialCreds = creds
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := json.NewEncoder(stdout)
	if *watch {
		return watchLeader(ctx, flags.Arg(0), *count, out, stderr)
	}
	rc := 0
	for _, addr := range flags.Args() {
		if code := getLeader(ctx, addr, out, stderr); code > rc {
			rc = code
		}
	}
	return rc
}

// dialCreds: mutual TLS from the flags, or plaintext with -insecure.
var dialCreds credentials.TransportCredentials

func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(dialCreds))
}

// mutualTLS presents the client certificate and trusts only the cluster CA; serverName is checked in
// the node's certificate whatever address is dialled (every node's names member.bullyproof).
func mutualTLS(caFile, certFile, keyFile, serverName string) (credentials.TransportCredentials, error) {
	if caFile == "" || certFile == "" || keyFile == "" {
		return nil, errors.New("give -cacert, -cert and -key (from `bullyproof certs init`), or -insecure")
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(&tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: serverName, MinVersion: tls.VersionTLS12,
	}), nil
}

func getLeader(ctx context.Context, addr string, out *json.Encoder, stderr io.Writer) int {
	conn, err := dial(addr)
	if err != nil {
		return fail(stderr, addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, getLeaderDeadline)
	defer cancel()
	info, err := pb.NewLeadershipClient(conn).GetLeader(ctx, &pb.GetLeaderRequest{})
	if err != nil {
		return fail(stderr, addr, err)
	}
	return emit(out, stderr, addr, info)
}

func watchLeader(ctx context.Context, addr string, count int, out *json.Encoder, stderr io.Writer) int {
	conn, err := dial(addr)
	if err != nil {
		return fail(stderr, addr, err)
	}
	defer conn.Close()
	stream, err := pb.NewLeadershipClient(conn).WatchLeader(ctx, &pb.WatchLeaderRequest{})
	if err != nil {
		return fail(stderr, addr, err)
	}
	for printed := 0; count == 0 || printed < count; printed++ {
		info, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return 0 // interrupted: a normal way to stop watching
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("server ended the stream")
			}
			return fail(stderr, addr, err)
		}
		if rc := emit(out, stderr, addr, info); rc != 0 {
			return rc
		}
	}
	return 0
}

func emit(out *json.Encoder, stderr io.Writer, addr string, info *pb.LeaderInfo) int {
	err := out.Encode(line{Addr: addr, Node: info.GetNodeId(), Leader: info.GetLeaderId(), Epoch: info.GetEpoch(), Known: info.GetKnown()})
	if err != nil {
		fmt.Fprintf(stderr, "wholeads: %v\n", err)
		return 1
	}
	return 0
}

func fail(stderr io.Writer, addr string, err error) int {
	fmt.Fprintf(stderr, "wholeads: %s: %v\n", addr, err)
	if status.Code(err) == codes.Unimplemented {
		return 3
	}
	return 1
}
