// Command nonewprivs is installed setuid root in the nonewprivs test image:
// it prints the effective uid, which is 0 unless no_new_privs stopped the setuid.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
