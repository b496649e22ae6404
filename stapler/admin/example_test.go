package admin_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/stapler"
	"github.com/staplerkit/ocsp/stapler/admin"
)

func ExampleNewHandler() {
	s, err := stapler.New(config.OCSP{}, stapler.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		panic(err)
	}
	defer s.Close()

	// A handler anyone could use is refused.
	_, err = admin.NewHandler(s, admin.Options{})
	fmt.Println(errors.Is(err, admin.ErrNoAuth))

	h, err := admin.NewHandler(s, admin.Options{APIKey: "change-me"})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(h) // in production: your admin listener
	defer srv.Close()

	for _, key := range []string{"", "change-me"} {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/ocsp", nil)
		req.Header.Set("X-API-KEY", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, body["error_code"], body["ocsp_functionality"])
	}
	// Output:
	// true
	// 401 unauthorized <nil>
	// 200 <nil> false
}
