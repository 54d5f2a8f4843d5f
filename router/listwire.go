package router

import (
	"context"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crimux/crimux/sandbox"
)

// The kubelet lists every pod and container each second (its PLEG), and
// with hundreds of pods it is protobuf's encoding of the answer, labels
// and annotations encoded by reflection, that the call costs crimux (about
// 3 ms for 500 pods; the list itself takes 0.2 ms). A list item never
// changes but for its state, so on its way out over gRPC (wire) the list
// is sent as the bytes each item encoded to the first time,
// without its state, kept with the record, each followed by its state: the
// same message on the wire, without encoding it again, and without a
// message made per item (at 500 pods, garbage collection took a third of
// crimux's CPU in a relist).

var (
	sandboxStateField   = fieldNumber(&runtime.PodSandbox{}, "state", false)
	containerStateField = fieldNumber(&runtime.Container{}, "state", false)
	podItemsField       = fieldNumber(&runtime.ListPodSandboxResponse{}, "items", true)
	containerItemsField = fieldNumber(&runtime.ListContainersResponse{}, "containers", true)
)

// fieldNumber is the number of m's enum field name, or of its repeated
// message field name (list).
func fieldNumber(m proto.Message, name protoreflect.Name, list bool) protowire.Number {
	f := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if f == nil || list && (f.Kind() != protoreflect.MessageKind || !f.IsList()) || !list && f.Kind() != protoreflect.EnumKind {
		panic("cri-api: no such field " + string(name) + " in " + string(m.ProtoReflect().Descriptor().FullName()))
	}
	return f.Number()
}

// wire is the Router as it is served over gRPC (Register): the same but
// for its lists, which go out in their items' kept encodings.
type wire struct{ *Router }

// ListPodSandbox is Router.ListPodSandbox on the wire.
func (w wire) ListPodSandbox(ctx context.Context, req *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	b, ok := encodeItems(w.listSandboxes(req.GetFilter()), podItemsField, func(l listedSandbox) ([]byte, uint64) {
		return keptEncoding(&l.sb.EncodedItem, func() proto.Message { return sandboxItem(l.sb, 0) }), uint64(l.state)
	}, sandboxStateField)
	if !ok {
		return w.Router.ListPodSandbox(ctx, req)
	}
	out := &runtime.ListPodSandboxResponse{}
	out.ProtoReflect().SetUnknown(b)
	return out, nil
}

// ListContainers is Router.ListContainers on the wire.
func (w wire) ListContainers(ctx context.Context, req *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	b, ok := encodeItems(w.listContainers(req.GetFilter()), containerItemsField, func(l listedContainer) ([]byte, uint64) {
		return keptEncoding(&l.c.EncodedItem, func() proto.Message { return containerItem(l.c, 0) }), uint64(l.state)
	}, containerStateField)
	if !ok {
		return w.Router.ListContainers(ctx, req)
	}
	out := &runtime.ListContainersResponse{}
	out.ProtoReflect().SetUnknown(b)
	return out, nil
}

// encodeItems is the encoding of items as the repeated field f of a
// message, all in one buffer: each item's kept encoding and then its state
// (field stateField; proto3 leaves a zero out). false: an item has none
// (it can't be encoded; gRPC's encoding of the list fails the call).
func encodeItems[L any](items []L, f protowire.Number, kept func(L) ([]byte, uint64), stateField protowire.Number) ([]byte, bool) {
	type part struct {
		b     []byte
		state uint64
	}
	parts := make([]part, len(items))
	size := 0
	for i, it := range items {
		b, st := kept(it)
		if b == nil {
			return nil, false
		}
		parts[i] = part{b, st}
		size += protowire.SizeTag(f) + protowire.SizeBytes(itemSize(b, stateField, st))
	}
	out := make([]byte, 0, size)
	for _, p := range parts {
		out = protowire.AppendTag(out, f, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(itemSize(p.b, stateField, p.state)))
		out = append(out, p.b...)
		if p.state != 0 {
			out = protowire.AppendTag(out, stateField, protowire.VarintType)
			out = protowire.AppendVarint(out, p.state)
		}
	}
	return out, true
}

// itemSize is the size of an item's kept encoding b with its state.
func itemSize(b []byte, stateField protowire.Number, state uint64) int {
	if state == 0 {
		return len(b)
	}
	return len(b) + protowire.SizeTag(stateField) + protowire.SizeVarint(state)
}

// keptEncoding is what e keeps, or item (in the zero state) encoded now
// and kept; nil if it can't be encoded.
func keptEncoding(e *sandbox.EncodedItem, item func() proto.Message) []byte {
	if b := e.Encoded(); b != nil {
		return b
	}
	b, err := proto.Marshal(item())
	if err != nil {
		return nil
	}
	e.SetEncoded(b)
	return b
}
