// cnidriver is a tiny cnitool-like driver around the real libcni (Debian's
// golang-github-appc-cni-dev, v1.1.2) used by the end-to-end tests.
//
// Usage:
//
//	cnidriver [-cache-dir DIR] [-ifname eth0] [-container-id ID] add|check|del CONFLIST_FILE NETNS_PATH
//
// CNI_PATH (colon separated) is taken from the environment.  On success `add`
// prints the (final) result JSON on stdout; check/del print nothing.  On any
// error the driver prints {"code":N,"msg":"...","details":"..."} on stdout
// (the fields of the *types.Error returned by libcni / the plugin, or code 0
// for errors that do not carry a CNI error) and exits 1.  The full, wrapped
// libcni error message is also written to stderr.
//
// Build offline:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE=/tmp/gocache go build -o cnidriver .
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

type errorOut struct {
	Code    uint   `json:"code"`
	Msg     string `json:"msg"`
	Details string `json:"details"`
}

func fail(err error) {
	out := errorOut{Code: 0, Msg: err.Error()}
	var cniErr *types.Error
	if errors.As(err, &cniErr) && cniErr != nil {
		out.Code = cniErr.Code
		out.Msg = cniErr.Msg
		out.Details = cniErr.Details
	}
	fmt.Fprintf(os.Stderr, "cnidriver: %v\n", err)
	b, mErr := json.Marshal(out)
	if mErr != nil {
		b = []byte(`{"code":0,"msg":"cannot marshal error","details":""}`)
	}
	fmt.Fprintln(os.Stdout, string(b))
	os.Exit(1)
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: %s [-cache-dir DIR] [-ifname eth0] [-container-id ID] add|check|del CONFLIST_FILE NETNS_PATH\n", filepath.Base(os.Args[0]))
	flag.PrintDefaults()
}

func main() {
	cacheDir := flag.String("cache-dir", "", "libcni cache directory (default: libcni's /var/lib/cni)")
	ifName := flag.String("ifname", "eth0", "CNI_IFNAME")
	containerID := flag.String("container-id", "", "CNI_CONTAINERID (default: derived from the netns path)")
	flag.Usage = usage
	flag.Parse()

	if flag.NArg() != 3 {
		usage()
		fail(fmt.Errorf("expected 3 arguments (command, conflist, netns), got %d", flag.NArg()))
	}
	cmd, confFile, netns := flag.Arg(0), flag.Arg(1), flag.Arg(2)

	list, err := libcni.ConfListFromFile(confFile)
	if err != nil {
		fail(err)
	}

	var paths []string
	for _, p := range strings.Split(os.Getenv("CNI_PATH"), string(os.PathListSeparator)) {
		if p != "" {
			paths = append(paths, p)
		}
	}

	id := *containerID
	if id == "" {
		id = "cnidriver-" + filepath.Base(netns)
	}

	rt := &libcni.RuntimeConf{
		ContainerID: id,
		NetNS:       netns,
		IfName:      *ifName,
	}

	cninet := libcni.NewCNIConfigWithCacheDir(paths, *cacheDir, nil)
	ctx := context.Background()

	switch cmd {
	case "add":
		result, err := cninet.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(err)
		}
		b, err := json.Marshal(result)
		if err != nil {
			fail(err)
		}
		fmt.Fprintln(os.Stdout, string(b))
	case "check":
		if err := cninet.CheckNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	case "del":
		if err := cninet.DelNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	default:
		usage()
		fail(fmt.Errorf("unknown command %q (want add, check or del)", cmd))
	}
}
