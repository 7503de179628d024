// hello: a tiny static HTTP server, the example vassal of the scratch image
// (examples/Dockerfile). It has its own go.mod, so the emperor's module gets
// no extra package; it needs only the standard library.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	name := flag.String("name", "", "name to answer with (default $HELLO_NAME)")
	flag.Parse()
	if *name == "" {
		*name = os.Getenv("HELLO_NAME")
	}
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s (pid %d on %s), you asked for %s%s\n",
			*name, os.Getpid(), host, r.Host, r.URL.Path)
	})
	log.Printf("hello %s listening on %s", *name, *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
