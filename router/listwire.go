package router

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The kubelet lists every pod and container each second (its PLEG), and
// with hundreds of pods it is protobuf's encoding of the answer, labels
// and annotations encoded by reflection, that the call costs crimux (about
// 3 ms for 500 pods; the list itself takes 0.2 ms). A list item never
// changes but for its state, so on its way out over gRPC (Interceptor)
// each item is replaced by the bytes it encoded to the first time, without
// its state, kept with the record, and its state encoded after them: the
// same message on the wire, without encoding it again.

var (
	sandboxStateField   = fieldNumber(&runtime.PodSandbox{}, "state")
	containerStateField = fieldNumber(&runtime.Container{}, "state")
)

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	f := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if f == nil || f.Kind() != protoreflect.EnumKind {
		panic("cri-api: no enum field " + string(name) + " in " + string(m.ProtoReflect().Descriptor().FullName()))
	}
	return f.Number()
}

// encodedLists puts a list response's items in their kept encoding (made
// and kept on first use); other responses, and items whose record is gone,
// are left as they are.
func (r *Router) encodedLists(resp any) any {
	switch m := resp.(type) {
	case *runtime.ListPodSandboxResponse:
		for i, it := range m.Items {
			if sb, err := r.sandboxes.Get(it.Id); err == nil && sb.ID == it.Id {
				m.Items[i] = encodedItem(it, &it.State, sandboxStateField, sb.Encoded, sb.SetEncoded)
			}
		}
	case *runtime.ListContainersResponse:
		for i, it := range m.Containers {
			if c, err := r.containers.Get(it.Id); err == nil && c.ID == it.Id {
				m.Containers[i] = encodedItem(it, &it.State, containerStateField, c.Encoded, c.SetEncoded)
			}
		}
	}
	return resp
}

// encodedItem is item as an empty message whose unknown fields are the
// kept encoding of item without its state (made now if none is kept) and
// then its state.
func encodedItem[M proto.Message, S ~int32](item M, state *S, field protowire.Number, kept func() []byte, keep func([]byte)) M {
	b := kept()
	if b == nil {
		st := *state
		*state = 0
		enc, err := proto.Marshal(item)
		*state = st
		if err != nil {
			return item
		}
		keep(enc)
		b = enc
	}
	if *state != 0 { // proto3 leaves the zero value out
		b = protowire.AppendTag(b[:len(b):len(b)], field, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(*state)))
	}
	out := item.ProtoReflect().New()
	out.SetUnknown(b)
	return out.Interface().(M)
}
