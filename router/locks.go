package router

import "sync"

// keyedLocks serialises operations on one object (a pod or a container)
// while operations on others go on: each key has its own mutex, made when
// first locked and dropped when its last holder and waiter are gone.
//
// The rules, so that nothing deadlocks and no pod waits on another:
//   - pod-level operations (StopPodSandbox, RemovePodSandbox,
//     CreateContainer, StartContainer, RemoveContainer) lock the pod;
//   - operations on one container (StartContainer, StopContainer,
//     RemoveContainer, UpdateContainerResources) lock the container, after
//     the pod when they lock both;
//   - StopContainer locks only its container, so the kubelet's parallel
//     stops of a pod's containers, each with its grace period, run at once.
type keyedLocks struct {
	mu    sync.Mutex // guards locks
	locks map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int // holders and waiters; guarded by keyedLocks.mu
}

func newKeyedLocks() *keyedLocks { return &keyedLocks{locks: map[string]*keyedLock{}} }

// lock takes the key's mutex and returns its unlock.
func (k *keyedLocks) lock(key string) func() {
	k.mu.Lock()
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// size is how many keys have a mutex (for tests: none leak).
func (k *keyedLocks) size() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.locks)
}

// lockPod serialises the operations on a pod and its containers.
func (r *Router) lockPod(id string) func() { return r.locks.lock("pod/" + id) }

// lockContainer serialises the operations on one container.
func (r *Router) lockContainer(id string) func() { return r.locks.lock("ctr/" + id) }
