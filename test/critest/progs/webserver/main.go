// Command webserver stands in for the nginx and httpd images the CRI
// validation suite pulls: it serves a page on $PORT and behaves as the suite
// checks those servers (nginx: "master process" in /proc/1/cmdline and a pid
// file; httpd: a log line naming httpd).
package main

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	flavor := os.Getenv("WEBSERVER_FLAVOR")
	port := os.Getenv("PORT")
	if port == "" {
		port = "80"
	}
	if flavor == "nginx" && !strings.Contains(os.Args[0], "master process") {
		// nginx's master renames itself; re-exec under that name so
		// /proc/1/cmdline says "nginx: master process ...". The executable
		// path keeps the process name (comm) "nginx" for pidof.
		exe, err := os.Executable()
		if err == nil {
			args := append([]string{"nginx: master process " + strings.Join(os.Args, " ")}, os.Args[1:]...)
			err = syscall.Exec(exe, args, os.Environ())
		}
		fmt.Fprintf(os.Stderr, "re-exec: %v\n", err)
		os.Exit(1)
	}
	if flavor == "nginx" {
		_ = os.MkdirAll("/var/run", 0o755)
		if err := os.WriteFile("/var/run/nginx.pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "pid file: %v\n", err)
		}
	}
	if flavor == "httpd" {
		fmt.Fprintln(os.Stderr, "AH00558: httpd: serving on port "+port)
		fmt.Fprintln(os.Stderr, "[mpm_event:notice] httpd (pid "+strconv.Itoa(os.Getpid())+") resuming normal operations")
	}
	page := "<html><body><h1>Welcome to " + flavor + "!</h1></body></html>\n"
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("%s %s %s\n", r.RemoteAddr, r.Method, r.URL.Path)
		_, _ = w.Write([]byte(page))
	})
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
