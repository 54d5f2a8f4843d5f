package containerd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
)

// Making a container holds a lease on what it prepares (the rootfs
// snapshot) until the container that references it exists, so that
// containerd's garbage collector can't take it in between. client.NewContainer
// creates that lease and deletes it on the way out: two metadata commits,
// each a disk sync, on the path of every CreateContainer and RunPodSandbox.
// leasePool takes both off that path: a lease is made ahead of time, and
// deleted after the call has returned. A lease a crash leaves behind
// expires (leaseTTL) and containerd's collector removes it.

const (
	labelLease = "io.crimux/lease"
	leaseTTL   = time.Hour
	leaseKeep  = 2 // leases made ahead
)

type leasePool struct {
	d     *Driver
	mu    sync.Mutex
	ready []leases.Lease
	// filling is set while a goroutine makes leases ahead.
	filling bool
}

// with returns ctx holding a lease, and a release that deletes the lease
// in the background.
func (p *leasePool) with(ctx context.Context) (context.Context, func(), error) {
	ctx = p.d.ctx(ctx)
	l, ok := p.take()
	if !ok {
		var err error
		if l, err = p.create(ctx); err != nil {
			return nil, nil, err
		}
	}
	p.fill()
	release := func() { go p.d.deleteLease(l) }
	return leases.WithLease(ctx, l.ID), release, nil
}

func (p *leasePool) take() (leases.Lease, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.ready); n > 0 {
		l := p.ready[n-1]
		p.ready = p.ready[:n-1]
		// One made ahead long ago may be near its expiry: not used.
		if exp, err := time.Parse(time.RFC3339, l.Labels["containerd.io/gc.expire"]); err == nil && time.Until(exp) > leaseTTL/2 {
			return l, true
		}
	}
	return leases.Lease{}, false
}

func (p *leasePool) create(ctx context.Context) (leases.Lease, error) {
	return p.d.newLease(ctx, "container-create", leaseTTL)
}

// newLease makes a lease labelled with what it is for and this instance
// (what sweepLeases finds after a crash), expiring after ttl.
func (d *Driver) newLease(ctx context.Context, op string, ttl time.Duration) (leases.Lease, error) {
	return d.client.LeasesService().Create(d.ctx(ctx), leases.WithRandomID(), leases.WithExpiration(ttl),
		leases.WithLabels(map[string]string{labelLease: op, labelInstance: d.opts.Instance}))
}

// deleteLease deletes l, bounded, whatever the caller's context.
func (d *Driver) deleteLease(l leases.Lease) {
	ctx, cancel := d.cleanupCtx()
	defer cancel()
	if err := d.client.LeasesService().Delete(ctx, l); err != nil && !isNotFound(err) {
		d.log.Warn("delete lease", "lease", l.ID, "error", err)
	}
}

// fill makes leases ahead, up to leaseKeep, in the background.
func (p *leasePool) fill() {
	p.mu.Lock()
	if p.filling || len(p.ready) >= leaseKeep {
		p.mu.Unlock()
		return
	}
	p.filling = true
	p.mu.Unlock()
	go func() {
		defer func() {
			p.mu.Lock()
			p.filling = false
			p.mu.Unlock()
		}()
		for {
			p.mu.Lock()
			full := len(p.ready) >= leaseKeep
			p.mu.Unlock()
			if full {
				return
			}
			ctx, cancel := p.d.cleanupCtx()
			l, err := p.create(ctx)
			cancel()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.ready = append(p.ready, l)
			p.mu.Unlock()
		}
	}()
}

// withLease returns ctx holding a lease of crimux's own for work that
// creates content or snapshots (a pull, an unpack, an import), and a done
// that deletes it. Unlike the client's default lease it carries this
// instance's label, so a lease a crash leaves mid-pull is swept at the next
// start (sweepLeases) instead of holding its content for a day.
func (d *Driver) withLease(ctx context.Context, op string) (context.Context, func(), error) {
	ctx = d.ctx(ctx)
	l, err := d.newLease(ctx, op, 24*time.Hour)
	if err != nil {
		return nil, nil, fmt.Errorf("lease for %s: %w", op, mapErr(err))
	}
	return leases.WithLease(ctx, l.ID), func() { d.deleteLease(l) }, nil
}

// drain deletes the leases made ahead (the driver is closing).
func (p *leasePool) drain(ctx context.Context) {
	p.mu.Lock()
	ready := p.ready
	p.ready = nil
	p.mu.Unlock()
	for _, l := range ready {
		_ = p.d.client.LeasesService().Delete(p.d.ctx(ctx), l)
	}
}

// sweepLeases deletes the leases a crashed crimux of this instance made
// (ahead, or not yet deleted); at start, before anything creates one.
func (d *Driver) sweepLeases(ctx context.Context) ([]string, error) {
	ctx = d.ctx(ctx)
	ls, err := d.client.LeasesService().List(ctx, fmt.Sprintf("labels.%q==%q", labelInstance, d.opts.Instance))
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", mapErr(err))
	}
	var removed []string
	var errs []error
	for _, l := range ls {
		if l.Labels[labelLease] == "" {
			continue
		}
		if err := d.client.LeasesService().Delete(ctx, l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete lease %s: %w", l.ID, mapErr(err)))
			continue
		}
		removed = append(removed, "lease/"+l.ID)
	}
	return removed, errors.Join(errs...)
}
