package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestNginxStopsStaplingWhenOCSPIsTurnedOffThroughTheAdminAPI: the daemon
// keeps the file "equal to what the Stapler would staple". An operator who
// turns OCSP off through the daemon's own admin API (PUT /v1/ocsp
// {"ocsp_functionality": false}: the Stapler then staples nothing) must see
// nginx stop stapling, as the Stapler's own handshakes do; the file and the
// include must not keep stapling what was turned off.
func TestNginxStopsStaplingWhenOCSPIsTurnedOffThroughTheAdminAPI(t *testing.T) {
	nginx := needTool(t, "nginx", "/usr/sbin/nginx")
	openssl := needTool(t, "openssl")
	p := newPKI(t, "nginx.test")
	dir := p.dir
	port := freePort(t)
	conf := writeNginxConf(t, p, port)

	d := startDaemon(t, "-cert", p.chain, "-nginx-conf", "-reload-delay", "50ms", "-check-interval", "100ms",
		"-reload", fmt.Sprintf("%s -s reload -p %s -c %s", nginx, dir, conf))
	waitFor(t, "the nginx include", func() bool {
		b, _ := os.ReadFile(p.chain + ".ocsp.conf")
		return strings.Contains(string(b), "ssl_stapling_file")
	})
	log := &syncBuffer{}
	startProcess(t, log, nginx, "-p", dir, "-c", conf, "-g", "daemon off;")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitTLS(t, addr, log)
	waitStatus(t, openssl, addr, "nginx.test", p.caFile, "good", log)

	req, _ := http.NewRequest("PUT", d.admin+"/v1/ocsp", strings.NewReader(`{"ocsp_functionality": false}`))
	req.Header.Set("X-API-KEY", "k")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"ocsp_functionality": false`) {
		t.Fatalf("PUT /v1/ocsp: %d %s", resp.StatusCode, body)
	}
	waitStatus(t, openssl, addr, "nginx.test", p.caFile, "", log)
	if !fileGone(p.chain + ".ocsp") {
		t.Fatalf("OCSP is off, yet the response file is still there")
	}
}
