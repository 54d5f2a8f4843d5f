// Command crimux-testregistry serves crimux's test images (busybox built from
// the host's Debian busybox) from an in-memory registry on a loopback address,
// for trying crimux on a node without registry access.
//
//	crimux-testregistry [-addr 127.0.0.1:5000] [-mirrors /etc/crimux/certs.d]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/crimux/crimux/test/images"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5000", "loopback address to serve on")
	mirrors := flag.String("mirrors", "", "also write hosts.toml files here that mirror docker.io to this registry")
	flag.Parse()
	if err := run(*addr, *mirrors); err != nil {
		fmt.Fprintf(os.Stderr, "crimux-testregistry: %v\n", err)
		os.Exit(1)
	}
}

func run(addr, mirrors string) error {
	reg, err := images.StartRegistry(addr)
	if err != nil {
		return err
	}
	img, err := images.Busybox()
	if err != nil {
		return err
	}
	ref, err := reg.Push("library/busybox:latest", img)
	if err != nil {
		return err
	}
	if mirrors != "" {
		if err := reg.WriteMirrors(mirrors, "docker.io"); err != nil {
			return err
		}
	}
	fmt.Printf("serving %s\n", ref)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return reg.Close()
}
