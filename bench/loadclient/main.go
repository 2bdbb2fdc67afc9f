// Command loadclient runs many cheap RTMP / HTTP-FLV players in one process (one goroutine each) for a bounded
// time and prints a JSON summary. Players never decode: they parse chunk and tag headers only.
//
//	loadclient -mode load -url rtmp://127.0.0.1:1935/live/s0 -url ... -n 200 -ramp 3 -warmup 4 -window 10
//	loadclient -mode ttfp -url rtmp://... -t0ms <epoch ms when the publish started> -timeout 30
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type options struct {
	urls        multiFlag
	resolve     multiFlag
	players     int
	ramp        float64
	warmup      float64
	window      float64
	fps         float64
	minFrames   float64
	maxLag      float64
	stallGap    float64
	caFile      string
	insecure    bool
	mode        string
	t0ms        int64
	timeout     float64
	dialTimeout float64
}

// Source yields media tags from one play session.
type Source interface {
	Next() (Tag, error)
	Bytes() uint64
	Close() error
}

type countingReader struct {
	r io.ReadCloser
	n uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	return n, err
}

type flvSource struct {
	body *countingReader
	fr   *FLVReader
}

func (f *flvSource) Next() (Tag, error) { return f.fr.Next() }
func (f *flvSource) Bytes() uint64      { return f.body.n }
func (f *flvSource) Close() error       { return f.body.r.Close() }

func httpClient(o *options) (*http.Client, error) {
	tlsConf := &tls.Config{InsecureSkipVerify: o.insecure} //nolint:gosec // lab CA only when asked
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tlsConf.RootCAs = pool
	}
	mapping := map[string]string{}
	for _, r := range o.resolve { // host:port=ip:port, like curl --resolve
		parts := strings.SplitN(r, "=", 2)
		if len(parts) == 2 {
			mapping[parts[0]] = parts[1]
		}
	}
	dialer := &net.Dialer{Timeout: time.Duration(o.dialTimeout * float64(time.Second))}
	tr := &http.Transport{
		TLSClientConfig:     tlsConf,
		DisableKeepAlives:   true,
		MaxIdleConnsPerHost: -1,
		DisableCompression:  true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to, ok := mapping[addr]; ok {
				addr = to
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr}, nil
}

func open(ctx context.Context, o *options, client *http.Client, raw string) (Source, error) {
	if strings.HasPrefix(raw, "rtmp://") {
		c, err := DialRTMP(raw, time.Duration(o.dialTimeout*float64(time.Second)))
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	body := &countingReader{r: resp.Body}
	return &flvSource{body: body, fr: NewFLVReader(body)}, nil
}

// PlayerResult is what one player saw. Times are seconds.
type PlayerResult struct {
	URL         string  `json:"url"`
	Error       string  `json:"error,omitempty"`
	Connected   bool    `json:"connected"`
	ConnectS    float64 `json:"connect_s"`
	Frames      int     `json:"frames"`       // video frames that arrived inside the window
	AudioFrames int     `json:"audio_frames"` // audio frames inside the window
	Stalls      int     `json:"stalls"`       // gaps between video frames longer than stall_gap_s inside the window
	MaxGapS     float64 `json:"max_gap_s"`
	LagMaxS     float64 `json:"lag_max_s"` // worst lag behind live inside the window (see Stats)
	LagEndS     float64 `json:"lag_end_s"`
	Bytes       uint64  `json:"bytes"`
	WindowBytes uint64  `json:"window_bytes"`
	OK          bool    `json:"ok"`
}

// Stats accumulates per-frame observations. Lag: for every video frame d = arrival - media timestamp; the
// smallest d seen is this player's "live" reference (the freshest frame relative to the wall clock), and
// lag = d - min(d). A player that keeps up stays near 0; one that falls behind (or stalls) grows.
type Stats struct {
	WindowStart, WindowEnd float64
	StallGap               float64
	minD                   float64
	haveD                  bool
	lastFrame              float64
	res                    *PlayerResult
}

func NewStats(res *PlayerResult, ws, we, stallGap float64) *Stats {
	return &Stats{WindowStart: ws, WindowEnd: we, StallGap: stallGap, res: res, lastFrame: -1}
}

// Observe records one tag arriving at time now (seconds since the run started).
func (s *Stats) Observe(t Tag, now float64) {
	in := now >= s.WindowStart && now <= s.WindowEnd
	if t.Type == 8 && !t.SeqHeader && in {
		s.res.AudioFrames++
	}
	if !t.IsFrame() {
		return
	}
	d := now - float64(t.Timestamp)/1000
	if !s.haveD || d < s.minD {
		s.minD, s.haveD = d, true
	}
	if in {
		s.res.Frames++
		lag := d - s.minD
		if lag > s.res.LagMaxS {
			s.res.LagMaxS = lag
		}
		s.res.LagEndS = lag
		ref := s.lastFrame
		if ref < s.WindowStart {
			ref = s.WindowStart
		}
		if gap := now - ref; gap > s.res.MaxGapS {
			s.res.MaxGapS = gap
		}
		if now-ref > s.StallGap {
			s.res.Stalls++
		}
	}
	s.lastFrame = now
}

// Finish accounts for a stall running until the end of the window (or a player that died).
func (s *Stats) Finish() {
	ref := s.lastFrame
	if ref < s.WindowStart {
		ref = s.WindowStart
	}
	if gap := s.WindowEnd - ref; gap > s.res.MaxGapS {
		s.res.MaxGapS = gap
	}
	if s.WindowEnd-ref > s.StallGap {
		s.res.Stalls++
	}
}

// Judge applies the quality threshold: enough frames and never too far behind live.
func Judge(r *PlayerResult, expectedFrames, minFrames, maxLag float64) bool {
	return r.Connected && r.Error == "" && float64(r.Frames) >= minFrames*expectedFrames && r.LagMaxS < maxLag
}

func runPlayer(ctx context.Context, o *options, client *http.Client, raw string, start time.Time, delay float64,
	res *PlayerResult) {
	res.URL = raw
	ws, we := o.ramp+o.warmup, o.ramp+o.warmup+o.window
	stats := NewStats(res, ws, we, o.stallGap)
	defer stats.Finish()
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(delay * float64(time.Second))):
	}
	t := time.Now()
	src, err := open(ctx, o, client, raw)
	if err != nil {
		res.Error = short(err)
		return
	}
	res.Connected = true
	res.ConnectS = time.Since(t).Seconds()
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		src.Close()
	}()
	defer close(done)
	var atWindow uint64
	var windowMarked bool
	for {
		tag, err := src.Next()
		now := time.Since(start).Seconds()
		if !windowMarked && now >= ws {
			atWindow, windowMarked = src.Bytes(), true
		}
		if err != nil {
			if ctx.Err() == nil && now < we {
				res.Error = short(err)
			}
			break
		}
		stats.Observe(tag, now)
		if now > we {
			break
		}
	}
	res.Bytes = src.Bytes()
	if windowMarked {
		res.WindowBytes = res.Bytes - atWindow
	}
}

func short(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.Contains(s, "dial") {
		s = "dial: " + s[i+2:]
	}
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

func load(o *options) map[string]any {
	client, err := httpClient(o)
	if err != nil {
		fail(err)
	}
	total := o.ramp + o.warmup + o.window
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration((total+2)*float64(time.Second)))
	defer cancel()
	start := time.Now()
	results := make([]PlayerResult, o.players)
	var wg sync.WaitGroup
	for i := 0; i < o.players; i++ {
		wg.Add(1)
		delay := 0.0
		if o.players > 1 {
			delay = o.ramp * float64(i) / float64(o.players)
		}
		go func(i int, delay float64) {
			defer wg.Done()
			runPlayer(ctx, o, client, o.urls[i%len(o.urls)], start, delay, &results[i])
		}(i, delay)
	}
	wg.Wait()
	expected := o.fps * o.window
	ok, connected := 0, 0
	errs := map[string]int{}
	var ratios, lags, kbps []float64
	for i := range results {
		r := &results[i]
		r.OK = Judge(r, expected, o.minFrames, o.maxLag)
		if r.OK {
			ok++
		}
		if r.Connected {
			connected++
		}
		if r.Error != "" {
			errs[r.Error]++
		}
		ratios = append(ratios, float64(r.Frames)/expected)
		lags = append(lags, r.LagMaxS)
		kbps = append(kbps, float64(r.WindowBytes)*8/1000/o.window)
	}
	return map[string]any{
		"mode": "load", "players": o.players, "ok": ok, "connected": connected, "errors": errs,
		"window_s": o.window, "expected_frames": expected,
		"thresholds":     map[string]float64{"min_frames_ratio": o.minFrames, "max_lag_s": o.maxLag, "stall_gap_s": o.stallGap},
		"frames_ratio":   map[string]float64{"p5": percentile(ratios, 0.05), "p50": percentile(ratios, 0.5), "min": percentile(ratios, 0)},
		"lag_max_s":      map[string]float64{"p50": percentile(lags, 0.5), "p95": percentile(lags, 0.95), "max": percentile(lags, 1)},
		"kbps":           map[string]float64{"p5": percentile(kbps, 0.05), "p50": percentile(kbps, 0.5)},
		"elapsed_s":      time.Since(start).Seconds(),
		"client_cpu_s":   selfCPU(),
		"player_results": results,
	}
}

// ttfp: retry playing until the first video frame arrives; report the time since -t0ms (publish start).
func ttfp(o *options) map[string]any {
	client, err := httpClient(o)
	if err != nil {
		fail(err)
	}
	deadline := time.Now().Add(time.Duration(o.timeout * float64(time.Second)))
	attempts, lastErr := 0, ""
	var history []string // what each failed attempt saw, seconds since t0
	for time.Now().Before(deadline) {
		attempts++
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		src, err := open(ctx, o, client, o.urls[0])
		if err == nil {
			for {
				var tag Tag
				tag, err = src.Next()
				if err != nil {
					break
				}
				if tag.IsFrame() && tag.Keyframe { // playable: a decoder can start here
					now := time.Now().UnixMilli()
					src.Close()
					cancel()
					return map[string]any{"mode": "ttfp", "ok": true, "ttfp_s": float64(now-o.t0ms) / 1000,
						"attempts": attempts, "keyframe": tag.Keyframe, "failed_attempts": history}
				}
			}
			src.Close()
		}
		cancel()
		lastErr = short(err)
		if len(history) < 30 {
			history = append(history, fmt.Sprintf("%.2f %s", float64(time.Now().UnixMilli()-o.t0ms)/1000, lastErr))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return map[string]any{"mode": "ttfp", "ok": false, "attempts": attempts, "error": lastErr,
		"failed_attempts": history}
}

// selfCPU is this process's user + system CPU time so far (the client shares the machine with the servers).
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadclient:", err)
	os.Exit(2)
}

func main() {
	o := &options{}
	flag.Var(&o.urls, "url", "stream URL (rtmp:// or http(s):// .flv); repeat: players take them round-robin")
	flag.Var(&o.resolve, "resolve", "host:port=ip:port for HTTP(S) URLs (repeatable)")
	flag.IntVar(&o.players, "n", 10, "players")
	flag.Float64Var(&o.ramp, "ramp", 2, "seconds over which the players connect")
	flag.Float64Var(&o.warmup, "warmup", 4, "seconds after the ramp before the window")
	flag.Float64Var(&o.window, "window", 10, "measurement window in seconds")
	flag.Float64Var(&o.fps, "fps", 25, "video frame rate of the published streams")
	flag.Float64Var(&o.minFrames, "min-frames", 0.95, "OK needs at least this share of the expected frames")
	flag.Float64Var(&o.maxLag, "max-lag", 2, "OK needs a lag behind live below this (seconds)")
	flag.Float64Var(&o.stallGap, "stall-gap", 0.5, "a gap between video frames above this counts as a stall")
	flag.StringVar(&o.caFile, "cacert", "", "CA bundle for https URLs")
	flag.BoolVar(&o.insecure, "insecure", false, "do not verify TLS certificates")
	flag.StringVar(&o.mode, "mode", "load", "load | ttfp")
	flag.Int64Var(&o.t0ms, "t0ms", 0, "ttfp: wall clock (Unix ms) when the publish started")
	flag.Float64Var(&o.timeout, "timeout", 30, "ttfp: give up after this many seconds")
	flag.Float64Var(&o.dialTimeout, "dial-timeout", 5, "seconds for TCP connect + handshake + play")
	flag.Parse()
	if len(o.urls) == 0 {
		fail(fmt.Errorf("no -url"))
	}
	if o.players < 1 || o.players > 5000 || o.ramp+o.warmup+o.window > 600 || o.timeout > 600 {
		fail(fmt.Errorf("bounds: 1 <= n <= 5000, ramp+warmup+window <= 600 s, timeout <= 600 s"))
	}
	var out map[string]any
	if o.mode == "ttfp" {
		out = ttfp(o)
	} else {
		out = load(o)
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fail(err)
	}
}
