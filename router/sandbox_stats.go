package router

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/sandbox"
)

// PodSandboxStats reports a pod's resource use: its containers' CPU and
// memory added up, and the traffic of its network namespace.
func (r *Router) PodSandboxStats(ctx context.Context, req *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	sb, err := r.sandboxes.Get(req.PodSandboxId)
	if err != nil {
		return nil, err
	}
	st, err := r.podStats(ctx, sb)
	if err != nil {
		return nil, err
	}
	return &runtime.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports the resource use of ready pods matching the filter.
func (r *Router) ListPodSandboxStats(ctx context.Context, req *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	out := &runtime.ListPodSandboxStatsResponse{}
	f := req.GetFilter()
	for _, sb := range r.sandboxes.List() {
		if sb.Status().State != runtime.PodSandboxState_SANDBOX_READY {
			continue
		}
		if f != nil && (f.Id != "" && !strings.HasPrefix(sb.ID, f.Id) || !matchLabels(f.LabelSelector, sb.Config.Labels)) {
			continue
		}
		st, err := r.podStats(ctx, sb)
		if err != nil {
			r.log.Debug("pod stats", "id", sb.ID, "error", err)
			continue
		}
		out.Stats = append(out.Stats, st)
	}
	return out, nil
}

func (r *Router) podStats(ctx context.Context, sb *sandbox.Sandbox) (*runtime.PodSandboxStats, error) {
	now := time.Now().UnixNano()
	var cpu, ws, usage, rss uint64
	lin := &runtime.LinuxPodSandboxStats{}
	for _, c := range r.containersOf(sb.ID) {
		if c.Status().State != runtime.ContainerState_CONTAINER_RUNNING {
			continue
		}
		cs, err := r.stats(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("stats of container %s: %w", c.ID, err)
		}
		cpu += cs.GetCpu().GetUsageCoreNanoSeconds().GetValue()
		ws += cs.GetMemory().GetWorkingSetBytes().GetValue()
		usage += cs.GetMemory().GetUsageBytes().GetValue()
		rss += cs.GetMemory().GetRssBytes().GetValue()
		lin.Containers = append(lin.Containers, cs)
	}
	lin.Cpu = &runtime.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtime.UInt64Value{Value: cpu}}
	lin.Memory = &runtime.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtime.UInt64Value{Value: ws},
		UsageBytes: &runtime.UInt64Value{Value: usage}, RssBytes: &runtime.UInt64Value{Value: rss}}
	if sb.NetNSPath != "" && sb.Status().State == runtime.PodSandboxState_SANDBOX_READY {
		ifs, err := netDev(sb.NetNSPath)
		if err != nil {
			return nil, err
		}
		lin.Network = &runtime.NetworkUsage{Timestamp: now, Interfaces: ifs}
		for _, i := range ifs {
			if i.Name == "eth0" {
				lin.Network.DefaultInterface = i
			}
		}
	}
	return &runtime.PodSandboxStats{
		Attributes: &runtime.PodSandboxAttributes{Id: sb.ID, Metadata: sb.Config.Metadata, Labels: sb.Config.Labels, Annotations: sb.Config.Annotations},
		Linux:      lin,
	}, nil
}

// ifaceCounters are one interface's counters from /proc/net/dev.
type ifaceCounters struct {
	name                                  string
	rxBytes, rxPackets, rxErrors, rxDrops uint64
	txBytes, txPackets, txErrors, txDrops uint64
}

// netDevFull reads the interface counters of a network namespace, loopback excluded.
func netDevFull(netns string) ([]ifaceCounters, error) {
	var out []ifaceCounters
	err := sandbox.InNetNS(netns, func() error {
		f, err := os.Open("/proc/thread-self/net/dev")
		if err != nil {
			return err
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			name, rest, ok := strings.Cut(s.Text(), ":")
			if !ok {
				continue
			}
			name = strings.TrimSpace(name)
			fields := strings.Fields(rest)
			if name == "lo" || len(fields) < 12 {
				continue
			}
			n := func(i int) uint64 {
				v, _ := strconv.ParseUint(fields[i], 10, 64)
				return v
			}
			out = append(out, ifaceCounters{name, n(0), n(1), n(2), n(3), n(8), n(9), n(10), n(11)})
		}
		return s.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read network counters of %s: %w", netns, err)
	}
	return out, nil
}

// netDev is netDevFull in the CRI's terms.
func netDev(netns string) ([]*runtime.NetworkInterfaceUsage, error) {
	ifs, err := netDevFull(netns)
	if err != nil {
		return nil, err
	}
	var out []*runtime.NetworkInterfaceUsage
	for _, i := range ifs {
		out = append(out, &runtime.NetworkInterfaceUsage{Name: i.name,
			RxBytes: &runtime.UInt64Value{Value: i.rxBytes}, RxErrors: &runtime.UInt64Value{Value: i.rxErrors},
			TxBytes: &runtime.UInt64Value{Value: i.txBytes}, TxErrors: &runtime.UInt64Value{Value: i.txErrors}})
	}
	return out, nil
}
