package sandbox

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// ErrNotFound is returned for an ID no record has.
var ErrNotFound = errors.New("not found")

// ErrAmbiguous is returned for an ID prefix that matches more than one record.
var ErrAmbiguous = errors.New("ambiguous id prefix")

// ErrNameTaken is returned when a name is reserved by another ID.
var ErrNameTaken = errors.New("name is reserved")

// Store is an index of records by ID that also resolves unique ID prefixes,
// as crictl users type them.
type Store[T any] struct {
	mu    sync.RWMutex // guards items and groups
	items map[string]T
	// group names the group a record is in (a container's pod); groups
	// indexes the records by it, so a group's records are found without
	// a look at every record. Both nil for a store made by NewStore.
	group  func(T) string
	groups map[string]map[string]T
}

// NewStore returns an empty store.
func NewStore[T any]() *Store[T] { return &Store[T]{items: map[string]T{}} }

// NewGroupedStore returns an empty store that also indexes its records by
// group(v), for InGroup. group must give the same answer for a record for
// as long as it is in the store under one ID.
func NewGroupedStore[T any](group func(T) string) *Store[T] {
	return &Store[T]{items: map[string]T{}, group: group, groups: map[string]map[string]T{}}
}

// Add adds or replaces the record with id.
func (s *Store[T]) Add(id string, v T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unindex(id)
	s.items[id] = v
	if s.group != nil {
		g := s.group(v)
		if s.groups[g] == nil {
			s.groups[g] = map[string]T{}
		}
		s.groups[g][id] = v
	}
}

// Delete removes the record with id; a missing one is fine.
func (s *Store[T]) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unindex(id)
	delete(s.items, id)
}

// unindex takes the record with id, if any, out of its group. s.mu is held.
func (s *Store[T]) unindex(id string) {
	old, ok := s.items[id]
	if !ok || s.group == nil {
		return
	}
	g := s.group(old)
	delete(s.groups[g], id)
	if len(s.groups[g]) == 0 {
		delete(s.groups, g)
	}
}

// InGroup returns the records of a grouped store in group g, in no
// particular order; nil for none.
func (s *Store[T]) InGroup(g string) []T {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []T
	for _, v := range s.groups[g] {
		out = append(out, v)
	}
	return out
}

// Get finds a record by its ID or by a unique prefix of it.
func (s *Store[T]) Get(id string) (T, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var zero T
	if id == "" {
		return zero, fmt.Errorf("empty id: %w", ErrNotFound)
	}
	if v, ok := s.items[id]; ok {
		return v, nil
	}
	var found []string
	for k := range s.items {
		if strings.HasPrefix(k, id) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return zero, fmt.Errorf("%q: %w", id, ErrNotFound)
	case 1:
		return s.items[found[0]], nil
	default:
		sort.Strings(found)
		return zero, fmt.Errorf("%q matches %s: %w", id, strings.Join(found, ", "), ErrAmbiguous)
	}
}

// List returns every record.
func (s *Store[T]) List() []T {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]T, 0, len(s.items))
	for _, v := range s.items {
		out = append(out, v)
	}
	return out
}

// Registrar reserves names for IDs so two pods (or containers) never share one.
type Registrar struct {
	mu    sync.Mutex // guards names
	names map[string]string
}

// NewRegistrar returns an empty registrar.
func NewRegistrar() *Registrar { return &Registrar{names: map[string]string{}} }

// Reserve reserves name for id. Reserving a name again for the same id is fine.
// A name held by another id gives an error wrapping ErrNameTaken that names the holder.
func (r *Registrar) Reserve(name, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if holder, ok := r.names[name]; ok {
		if holder == id {
			return nil
		}
		return &NameTakenError{Name: name, Holder: holder}
	}
	r.names[name] = id
	return nil
}

// Holder returns the id holding name, or "".
func (r *Registrar) Holder(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.names[name]
}

// Release frees name if it is held by id.
func (r *Registrar) Release(name, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names[name] == id {
		delete(r.names, name)
	}
}

// NameTakenError says which id holds a name.
type NameTakenError struct {
	Name   string
	Holder string
}

func (e *NameTakenError) Error() string {
	return fmt.Sprintf("name %q is reserved for %q", e.Name, e.Holder)
}

// Unwrap makes errors.Is(err, ErrNameTaken) true.
func (e *NameTakenError) Unwrap() error { return ErrNameTaken }
