package main

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func flvTag(typ byte, ts uint32, payload []byte) []byte {
	var b bytes.Buffer
	b.WriteByte(typ)
	n := len(payload)
	b.Write([]byte{byte(n >> 16), byte(n >> 8), byte(n)})
	b.Write([]byte{byte(ts >> 16), byte(ts >> 8), byte(ts), byte(ts >> 24)})
	b.Write([]byte{0, 0, 0})
	b.Write(payload)
	_ = binary.Write(&b, binary.BigEndian, uint32(11+n))
	return b.Bytes()
}

func TestFLVReader(t *testing.T) {
	var s bytes.Buffer
	s.Write([]byte{'F', 'L', 'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0})
	s.Write(flvTag(9, 0, []byte{0x17, 0, 0, 0, 0}))        // AVC sequence header
	s.Write(flvTag(9, 40, []byte{0x17, 1, 0, 0, 0, 1, 2})) // keyframe
	s.Write(flvTag(8, 0x01000010, []byte{0xaf, 1, 9, 9}))  // AAC raw, extended timestamp
	r := NewFLVReader(&s)
	a, err := r.Next()
	if err != nil || !a.SeqHeader || a.IsFrame() {
		t.Fatalf("seq header: %+v %v", a, err)
	}
	b, err := r.Next()
	if err != nil || !b.Keyframe || !b.IsFrame() || b.Timestamp != 40 || b.Size != 7 {
		t.Fatalf("keyframe: %+v %v", b, err)
	}
	c, err := r.Next()
	if err != nil || c.Type != 8 || c.Timestamp != 0x01000010 || c.SeqHeader {
		t.Fatalf("audio: %+v %v", c, err)
	}
	if _, err := r.Next(); err == nil {
		t.Fatal("expected EOF")
	}
}

func TestChunkReaderFormats(t *testing.T) {
	var s bytes.Buffer
	payload := bytes.Repeat([]byte{0x27}, 200) // inter frame, 200 bytes: two chunks of 128 + 72
	payload[1] = 1
	// fmt 0 on csid 6: ts 1000, len 200, type 9, stream 1
	s.Write([]byte{0x06, 0, 0x03, 0xe8, 0, 0, 200, 9, 1, 0, 0, 0})
	s.Write(payload[:128])
	s.Write([]byte{0xc6}) // fmt 3 continuation
	s.Write(payload[128:])
	// fmt 2 on csid 6: delta 40, same length/type
	s.Write([]byte{0x86, 0, 0, 40})
	s.Write(payload[:128])
	s.Write([]byte{0xc6})
	s.Write(payload[128:])
	// fmt 3 new message: delta 40 again
	s.Write([]byte{0xc6})
	s.Write(payload[:128])
	s.Write([]byte{0xc6})
	s.Write(payload[128:])
	// fmt 1 with an extended timestamp delta
	s.Write([]byte{0x46, 0xff, 0xff, 0xff, 0, 0, 4, 8, 0, 0, 0, 100, 0xaf, 1, 0, 0})
	c := NewChunkReader(&s)
	want := []uint32{1000, 1040, 1080, 1180}
	for i, w := range want {
		m, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if m.Timestamp != w {
			t.Fatalf("message %d: timestamp %d, want %d", i, m.Timestamp, w)
		}
	}
}

func TestChunkSizeAndAMF(t *testing.T) {
	var s bytes.Buffer
	var b bytes.Buffer
	amfString(&b, "_result")
	amfNumber(&b, 2)
	b.WriteByte(5)
	amfNumber(&b, 7)
	_ = writeMessage(&s, 3, 1, 0, []byte{0, 0, 16, 0}) // set chunk size 4096
	_ = writeMessage(&s, 3, 20, 0, b.Bytes())
	c := NewChunkReader(&s)
	if _, err := c.ReadMessage(); err != nil || c.chunkSize != 4096 {
		t.Fatalf("chunk size %d %v", c.chunkSize, err)
	}
	m, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	vals := amfDecode(m.Payload)
	if len(vals) != 4 || vals[0] != "_result" || vals[1] != 2.0 || vals[3] != 7.0 {
		t.Fatalf("amf: %#v", vals)
	}
}

func TestStatsAndJudge(t *testing.T) {
	r := &PlayerResult{Connected: true}
	s := NewStats(r, 1, 3, 0.5)
	// 25 fps, on time until t=2, then a 0.8 s stall, then frames arrive late.
	ts := uint32(0)
	now := 0.0
	for now < 2 {
		s.Observe(Tag{Type: 9, Size: 100, Timestamp: ts}, now)
		ts += 40
		now += 0.04
	}
	now += 0.8
	for now < 3 {
		s.Observe(Tag{Type: 9, Size: 100, Timestamp: ts}, now)
		ts += 40
		now += 0.04
	}
	s.Finish()
	if r.Stalls != 1 || r.MaxGapS < 0.8 || r.LagMaxS < 0.75 || r.LagMaxS > 0.9 {
		t.Fatalf("stats: %+v", r)
	}
	if Judge(r, 50, 0.95, 2) {
		t.Fatalf("a player with %d of 50 frames must not be OK", r.Frames)
	}
	if !Judge(&PlayerResult{Connected: true, Frames: 48, LagMaxS: 0.1}, 50, 0.95, 2) {
		t.Fatal("48/50 frames and 0.1 s lag is OK")
	}
}

func TestSplitRTMPURL(t *testing.T) {
	host, tc, app, stream, err := SplitRTMPURL("rtmp://127.0.0.1/live/cam1?token=abc")
	if err != nil || host != "127.0.0.1:1935" || tc != "rtmp://127.0.0.1/live" || app != "live" || stream != "cam1?token=abc" {
		t.Fatalf("%s %s %s %s %v", host, tc, app, stream, err)
	}
}
