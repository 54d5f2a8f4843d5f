// Command crimux-cni-fault is a CNI plugin for tests, chained after the real
// ones: it passes the previous result on, unless a file in its control dir
// says to fail or hang on ADD or DEL ("add-fail", "add-hang", "del-fail",
// "del-hang"). Each call is appended to "calls" in the control dir.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

type conf struct {
	types.NetConf
	Control string `json:"control"`
}

func load(args *skel.CmdArgs) (*conf, error) {
	var c conf
	if err := json.Unmarshal(args.StdinData, &c); err != nil {
		return nil, err
	}
	if c.Control == "" {
		return nil, errors.New("crimux-cni-fault: no control dir")
	}
	if err := version.ParsePrevResult(&c.NetConf); err != nil {
		return nil, err
	}
	return &c, nil
}

// act records the call and fails or hangs as the control dir says.
func act(c *conf, op, container string) error {
	if f, err := os.OpenFile(filepath.Join(c.Control, "calls"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintf(f, "%s %s\n", op, container)
		f.Close()
	}
	if _, err := os.Stat(filepath.Join(c.Control, op+"-hang")); err == nil {
		time.Sleep(time.Hour)
	}
	if _, err := os.Stat(filepath.Join(c.Control, op+"-fail")); err == nil {
		return fmt.Errorf("crimux-cni-fault: %s fails on purpose", op)
	}
	return nil
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			c, err := load(args)
			if err != nil {
				return err
			}
			if err := act(c, "add", args.ContainerID); err != nil {
				return err
			}
			if c.PrevResult == nil {
				return types.PrintResult(&current.Result{CNIVersion: c.CNIVersion}, c.CNIVersion)
			}
			return types.PrintResult(c.PrevResult, c.CNIVersion)
		},
		Del: func(args *skel.CmdArgs) error {
			c, err := load(args)
			if err != nil {
				return err
			}
			return act(c, "del", args.ContainerID)
		},
		Check: func(args *skel.CmdArgs) error { return nil },
	}, version.All, "crimux-cni-fault")
}
