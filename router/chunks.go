package router

// streamChunk is how many items one message of a streaming list carries, so
// that a node with many pods never hits the gRPC message size limit.
const streamChunk = 500

// chunks sends items in messages of at most streamChunk; an empty list is
// one empty message, so that the client still gets an answer.
func chunks[T any](items []T, send func([]T) error) error {
	if len(items) == 0 {
		return send(nil)
	}
	for i := 0; i < len(items); i += streamChunk {
		end := min(i+streamChunk, len(items))
		if err := send(items[i:end]); err != nil {
			return err
		}
	}
	return nil
}
