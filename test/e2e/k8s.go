package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/crimux/crimux/test/harness"
)

// obj is a Kubernetes object as kubectl takes it (JSON).
type obj = map[string]any

// podObj is a pod on this node (no scheduler runs: pods carry nodeName),
// with the RuntimeClass of handler ("" for none: the default handler).
func podObj(name, handler string, spec obj) obj {
	spec["nodeName"] = nodeName
	if handler != "" {
		spec["runtimeClassName"] = handler
	}
	if _, ok := spec["terminationGracePeriodSeconds"]; !ok {
		spec["terminationGracePeriodSeconds"] = 2
	}
	if _, ok := spec["automountServiceAccountToken"]; !ok {
		spec["automountServiceAccountToken"] = false
	}
	return obj{"apiVersion": "v1", "kind": "Pod", "metadata": obj{"name": name, "labels": obj{"e2e": "crimux"}}, "spec": spec}
}

// ctr is a busybox container running a shell command.
func ctr(name, cmd string, extra obj) obj {
	c := obj{"name": name, "image": harness.Busybox, "imagePullPolicy": "IfNotPresent", "command": []string{"sh", "-c", cmd}}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func list(items ...obj) []byte {
	b, _ := json.Marshal(obj{"apiVersion": "v1", "kind": "List", "items": items})
	return b
}

type ctrState struct {
	Running    *struct{ StartedAt string } `json:"running"`
	Waiting    *struct{ Reason, Message string }
	Terminated *struct {
		ExitCode int
		Reason   string
	}
}

type ctrStatus struct {
	Name         string
	Ready        bool
	RestartCount int
	ContainerID  string
	State        ctrState
	LastState    ctrState
}

type podState struct {
	Metadata struct {
		Name string
		UID  string
	}
	Status struct {
		Phase                 string
		PodIP                 string
		HostIP                string
		Conditions            []struct{ Type, Status string }
		ContainerStatuses     []ctrStatus
		InitContainerStatuses []ctrStatus
	}
}

func (p *podState) ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

func (p *podState) container(name string) *ctrStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	for i := range p.Status.InitContainerStatuses {
		if p.Status.InitContainerStatuses[i].Name == name {
			return &p.Status.InitContainerStatuses[i]
		}
	}
	return nil
}

func (c *cluster) pod(ctx context.Context, name string) (*podState, error) {
	var p podState
	if err := c.getJSON(ctx, &p, "get", "pod", name); err != nil {
		return nil, err
	}
	return &p, nil
}

// waitPod waits until cond holds for the pod, with the pod's events in
// the error when it doesn't.
func (c *cluster) waitPod(ctx context.Context, name string, d time.Duration, what string, cond func(*podState) error) (*podState, error) {
	var last *podState
	err := waitFor(d, fmt.Sprintf("pod %s %s", name, what), func() error {
		p, err := c.pod(ctx, name)
		if err != nil {
			return err
		}
		last = p
		return cond(p)
	})
	if err != nil {
		return last, fmt.Errorf("%w; events: %s", err, c.eventSummary(ctx, name))
	}
	return last, nil
}

func (c *cluster) waitReady(ctx context.Context, name string) (*podState, error) {
	return c.waitPod(ctx, name, 3*time.Minute, "Ready", func(p *podState) error {
		if !p.ready() {
			return fmt.Errorf("phase %s, not ready: %+v", p.Status.Phase, p.Status.ContainerStatuses)
		}
		return nil
	})
}

type event struct {
	Reason, Message, Type string
	Count                 int
}

func (c *cluster) events(ctx context.Context, name string) []event {
	var l struct{ Items []event }
	_ = c.getJSON(ctx, &l, "get", "events", "--field-selector", "involvedObject.name="+name)
	return l.Items
}

func (c *cluster) eventSummary(ctx context.Context, name string) string {
	// Every event is kept, each cut short: the one that explains a
	// failure (a liveness probe that killed the container) is often the
	// first of many.
	var parts []string
	for _, e := range c.events(ctx, name) {
		msg := strings.TrimSpace(e.Message)
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		if e.Count > 1 {
			msg += fmt.Sprintf(" (×%d)", e.Count)
		}
		parts = append(parts, e.Reason+": "+msg)
	}
	return strings.Join(parts, " | ")
}

// exec runs a command in a pod's container through the API server. A
// failure carries the pod's events (a probe that failed and restarted the
// container, say), as the logs dumped at the end of a run may not reach
// back to it.
func (c *cluster) exec(ctx context.Context, pod, container string, cmd ...string) (string, error) {
	out, err := c.kubectl(ctx, append([]string{"exec", pod, "-c", container, "--"}, cmd...)...)
	if err != nil {
		return out, fmt.Errorf("%w (events of pod %s: %s)", err, pod, c.eventSummary(ctx, pod))
	}
	return out, nil
}
