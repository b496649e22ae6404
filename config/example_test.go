package config_test

import (
	"errors"
	"fmt"

	"github.com/staplerkit/ocsp/config"
)

func ExampleDecodeOCSPUpdate() {
	current := config.DefaultOCSP()
	u, err := config.DecodeOCSPUpdate([]byte(`{"ocsp_functionality": true, "query_frequency": 3800}`))
	if err != nil {
		panic(err)
	}
	next, err := u.Apply(current)
	fmt.Println(next.OCSPFunctionality, next.QueryInterval(), err)

	_, err = config.DecodeOCSPUpdate([]byte(`{"response_timeout": 90}`))
	var e *config.Error
	if errors.As(err, &e) {
		fmt.Println(e.Code, e.Message)
	}
	// Output:
	// true 1h3m20s <nil>
	// invalid_schema response_timeout: must be an integer from 1 to 60 seconds, got 90
}

func ExampleDecodeStaplingUpdate() {
	s := config.DefaultStapling()
	for _, body := range []string{`{"ocsp_stapling": {"enabled": true}}`, `{"ocsp_stapling": null}`} {
		u, err := config.DecodeStaplingUpdate([]byte(body))
		if err != nil {
			panic(err)
		}
		s, _ = u.Apply(s)
		fmt.Printf("%+v\n", s)
	}
	// Output:
	// {Enabled:true SkipVerify:false CacheTTL:3600}
	// {Enabled:false SkipVerify:false CacheTTL:3600}
}
