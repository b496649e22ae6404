package admin_test

import (
	"log"
	"net/http"
	"os"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/stapler"
	"github.com/staplerkit/ocsp/stapler/admin"
)

// The admin API on a listener of its own, in your server (docs/operations.md
// shows this body; compiled, not run, as it serves for good).
func ExampleNewHandler_listener() {
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	h, err := admin.NewHandler(s, admin.Options{APIKey: os.Getenv("STAPLER_ADMIN_KEY")}) // or Authorize: yourMiddleware
	if err != nil {
		log.Fatal(err) // admin.ErrNoAuth without either
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:9000", h))
}
