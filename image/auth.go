package image

import (
	"encoding/base64"
	"strings"
)

// decodeAuth splits a base64 "user:password" auth string.
func decodeAuth(s string) (string, string, bool) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", "", false
	}
	u, p, ok := strings.Cut(string(b), ":")
	return u, p, ok
}
