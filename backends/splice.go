package backends

import (
	"context"
	"errors"
	"io"
	"net"
)

// Splice copies both ways between a client's port-forward stream and a
// connection into the pod, until both directions end or ctx is done. When
// the client's side ends, conn is half-closed so the server sees EOF.
func Splice(ctx context.Context, stream io.ReadWriter, conn net.Conn) error {
	errc := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, stream)
		if hc, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = hc.CloseWrite()
		}
		errc <- err
	}()
	go func() {
		_, err := io.Copy(stream, conn)
		errc <- err
	}()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		select {
		case <-errc:
		case <-ctx.Done():
		}
		return nil
	case <-ctx.Done():
		return nil
	}
}
