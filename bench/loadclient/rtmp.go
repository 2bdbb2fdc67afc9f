package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strings"
	"time"
)

// A minimal RTMP player: simple handshake, connect/createStream/play, chunk parsing. It never decodes media.

type chunkState struct {
	timestamp uint32
	delta     uint32
	length    int
	typeID    byte
	streamID  uint32
	extended  bool
	payload   []byte
	have      int
	started   bool
}

// ChunkReader reassembles RTMP messages from chunks.
type ChunkReader struct {
	r         *bufio.Reader
	chunkSize int
	streams   map[uint32]*chunkState
	BytesRead uint64
}

func NewChunkReader(r io.Reader) *ChunkReader {
	return &ChunkReader{r: bufio.NewReaderSize(r, 64*1024), chunkSize: 128, streams: map[uint32]*chunkState{}}
}

// Message is one reassembled RTMP message.
type Message struct {
	TypeID    byte
	StreamID  uint32
	Timestamp uint32
	Payload   []byte
}

func (c *ChunkReader) read(b []byte) error {
	n, err := io.ReadFull(c.r, b)
	c.BytesRead += uint64(n)
	return err
}

func u24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }

// ReadMessage returns the next complete message.
func (c *ChunkReader) ReadMessage() (Message, error) {
	var hdr [11]byte
	for {
		if err := c.read(hdr[:1]); err != nil {
			return Message{}, err
		}
		fmtType := hdr[0] >> 6
		csid := uint32(hdr[0] & 0x3f)
		switch csid {
		case 0:
			if err := c.read(hdr[:1]); err != nil {
				return Message{}, err
			}
			csid = 64 + uint32(hdr[0])
		case 1:
			if err := c.read(hdr[:2]); err != nil {
				return Message{}, err
			}
			csid = 64 + uint32(hdr[0]) + uint32(hdr[1])*256
		}
		st := c.streams[csid]
		if st == nil {
			st = &chunkState{}
			c.streams[csid] = st
		}
		newMessage := st.have == 0
		var field uint32
		switch fmtType {
		case 0:
			if err := c.read(hdr[:11]); err != nil {
				return Message{}, err
			}
			field = u24(hdr[0:3])
			st.length = int(u24(hdr[3:6]))
			st.typeID = hdr[6]
			st.streamID = binary.LittleEndian.Uint32(hdr[7:11])
		case 1:
			if err := c.read(hdr[:7]); err != nil {
				return Message{}, err
			}
			field = u24(hdr[0:3])
			st.length = int(u24(hdr[3:6]))
			st.typeID = hdr[6]
		case 2:
			if err := c.read(hdr[:3]); err != nil {
				return Message{}, err
			}
			field = u24(hdr[0:3])
		case 3:
			if !st.started {
				return Message{}, fmt.Errorf("fmt 3 chunk on unknown chunk stream %d", csid)
			}
		}
		if fmtType != 3 {
			st.extended = field == 0xffffff
		}
		if st.extended {
			if err := c.read(hdr[:4]); err != nil {
				return Message{}, err
			}
			if fmtType != 3 {
				field = binary.BigEndian.Uint32(hdr[:4])
			}
		}
		if newMessage {
			switch fmtType {
			case 0:
				st.timestamp = field
				st.delta = field // what FFmpeg adds for a following fmt 3 message
			case 1, 2:
				st.delta = field
				st.timestamp += field
			case 3:
				st.timestamp += st.delta
			}
			st.started = true
			if st.length > 16<<20 {
				return Message{}, fmt.Errorf("RTMP message of %d bytes", st.length)
			}
			if cap(st.payload) < st.length {
				st.payload = make([]byte, st.length)
			}
			st.payload = st.payload[:st.length]
		}
		n := st.length - st.have
		if n > c.chunkSize {
			n = c.chunkSize
		}
		if err := c.read(st.payload[st.have : st.have+n]); err != nil {
			return Message{}, err
		}
		st.have += n
		if st.have < st.length {
			continue
		}
		st.have = 0
		m := Message{TypeID: st.typeID, StreamID: st.streamID, Timestamp: st.timestamp, Payload: st.payload}
		if m.TypeID == 1 && len(m.Payload) >= 4 { // Set Chunk Size
			c.chunkSize = int(binary.BigEndian.Uint32(m.Payload) & 0x7fffffff)
		}
		return m, nil
	}
}

// ---- AMF0 (just what the commands need)

func amfString(b *bytes.Buffer, s string) {
	b.WriteByte(2)
	_ = binary.Write(b, binary.BigEndian, uint16(len(s)))
	b.WriteString(s)
}

func amfNumber(b *bytes.Buffer, f float64) {
	b.WriteByte(0)
	_ = binary.Write(b, binary.BigEndian, math.Float64bits(f))
}

func amfObject(b *bytes.Buffer, keys []string, values []any) {
	b.WriteByte(3)
	for i, k := range keys {
		_ = binary.Write(b, binary.BigEndian, uint16(len(k)))
		b.WriteString(k)
		switch v := values[i].(type) {
		case string:
			amfString(b, v)
		case float64:
			amfNumber(b, v)
		case bool:
			b.WriteByte(1)
			if v {
				b.WriteByte(1)
			} else {
				b.WriteByte(0)
			}
		}
	}
	b.Write([]byte{0, 0, 9})
}

// amfDecode reads AMF0 values from a command payload; objects are skipped (nil), strings and numbers kept.
func amfDecode(p []byte) []any {
	var out []any
	for len(p) > 0 {
		v, rest, ok := amfValue(p)
		if !ok {
			break
		}
		out = append(out, v)
		p = rest
	}
	return out
}

func amfValue(p []byte) (any, []byte, bool) {
	if len(p) == 0 {
		return nil, p, false
	}
	switch p[0] {
	case 0:
		if len(p) < 9 {
			return nil, p, false
		}
		return math.Float64frombits(binary.BigEndian.Uint64(p[1:9])), p[9:], true
	case 1:
		if len(p) < 2 {
			return nil, p, false
		}
		return p[1] != 0, p[2:], true
	case 2:
		if len(p) < 3 {
			return nil, p, false
		}
		n := int(binary.BigEndian.Uint16(p[1:3]))
		if len(p) < 3+n {
			return nil, p, false
		}
		return string(p[3 : 3+n]), p[3+n:], true
	case 5, 6:
		return nil, p[1:], true
	case 3, 8:
		q := p[1:]
		if p[0] == 8 {
			if len(q) < 4 {
				return nil, p, false
			}
			q = q[4:]
		}
		obj := map[string]any{}
		for {
			if len(q) < 3 {
				return nil, p, false
			}
			n := int(binary.BigEndian.Uint16(q[:2]))
			if n == 0 && q[2] == 9 {
				return obj, q[3:], true
			}
			if len(q) < 2+n {
				return nil, p, false
			}
			key := string(q[2 : 2+n])
			v, rest, ok := amfValue(q[2+n:])
			if !ok {
				return nil, p, false
			}
			obj[key] = v
			q = rest
		}
	}
	return nil, p, false
}

// ---- connection

type RTMPConn struct {
	conn      net.Conn
	cr        *ChunkReader
	ackWindow uint64
	lastAck   uint64
}

func writeMessage(w io.Writer, csid byte, typeID byte, streamID uint32, payload []byte) error {
	// One fmt-0 chunk: we announce a big chunk size first, and our messages are small.
	h := make([]byte, 12, 12+len(payload))
	h[0] = csid & 0x3f
	l := len(payload)
	h[4], h[5], h[6] = byte(l>>16), byte(l>>8), byte(l)
	h[7] = typeID
	binary.LittleEndian.PutUint32(h[8:12], streamID)
	_, err := w.Write(append(h, payload...))
	return err
}

// SplitRTMPURL returns tcUrl, app and the stream name (with its query) of rtmp://host[:port]/app/stream?q.
func SplitRTMPURL(raw string) (host, tcURL, app, stream string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return
	}
	if u.Scheme != "rtmp" {
		err = fmt.Errorf("not an rtmp URL: %s", raw)
		return
	}
	host = u.Host
	if u.Port() == "" {
		host += ":1935"
	}
	parts := strings.SplitN(strings.TrimPrefix(u.Path, "/"), "/", 2)
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		err = fmt.Errorf("rtmp URL needs /app/stream: %s", raw)
		return
	}
	app, stream = parts[0], parts[1]
	if u.RawQuery != "" {
		stream += "?" + u.RawQuery
	}
	tcURL = fmt.Sprintf("rtmp://%s/%s", u.Host, app)
	return
}

// DialRTMP connects, handshakes and starts playing; media messages are then read with Next.
func DialRTMP(raw string, timeout time.Duration) (*RTMPConn, error) {
	host, tcURL, app, stream, err := SplitRTMPURL(raw)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("tcp", host, timeout)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	c := &RTMPConn{conn: conn, ackWindow: 2500000}
	if err := c.handshake(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	c.cr = NewChunkReader(conn)
	if err := c.play(tcURL, app, stream); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

func (c *RTMPConn) handshake() error {
	c1 := make([]byte, 1537)
	c1[0] = 3
	if _, err := rand.Read(c1[9:]); err != nil {
		return err
	}
	if _, err := c.conn.Write(c1); err != nil {
		return err
	}
	s := make([]byte, 1+1536+1536)
	if _, err := io.ReadFull(c.conn, s); err != nil {
		return err
	}
	if s[0] != 3 {
		return fmt.Errorf("server RTMP version %d", s[0])
	}
	_, err := c.conn.Write(s[1 : 1+1536]) // C2 echoes S1
	return err
}

func (c *RTMPConn) command(csid byte, streamID uint32, name string, txn float64, args func(*bytes.Buffer)) error {
	var b bytes.Buffer
	amfString(&b, name)
	amfNumber(&b, txn)
	args(&b)
	return writeMessage(c.conn, csid, 20, streamID, b.Bytes())
}

// waitResult reads messages until the _result (or _error) of transaction txn.
func (c *RTMPConn) waitResult(txn float64) ([]any, error) {
	for {
		m, err := c.next()
		if err != nil {
			return nil, err
		}
		if m.TypeID != 20 {
			continue
		}
		vals := amfDecode(m.Payload)
		if len(vals) < 2 {
			continue
		}
		name, _ := vals[0].(string)
		id, _ := vals[1].(float64)
		if id != txn {
			continue
		}
		if name == "_result" {
			return vals, nil
		}
		return nil, fmt.Errorf("server answered %q to transaction %v: %v", name, txn, vals)
	}
}

func (c *RTMPConn) play(tcURL, app, stream string) error {
	var cs [4]byte
	binary.BigEndian.PutUint32(cs[:], 60000)
	if err := writeMessage(c.conn, 2, 1, 0, cs[:]); err != nil { // Set Chunk Size for what we send
		return err
	}
	err := c.command(3, 0, "connect", 1, func(b *bytes.Buffer) {
		amfObject(b, []string{"app", "flashVer", "tcUrl", "fpad", "capabilities", "audioCodecs", "videoCodecs",
			"videoFunction"}, []any{app, "LNX 9,0,124,2", tcURL, false, 15.0, 4071.0, 252.0, 1.0})
	})
	if err != nil {
		return err
	}
	if _, err := c.waitResult(1); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	var wa [4]byte
	binary.BigEndian.PutUint32(wa[:], 2500000)
	if err := writeMessage(c.conn, 2, 5, 0, wa[:]); err != nil {
		return err
	}
	if err := c.command(3, 0, "createStream", 2, func(b *bytes.Buffer) { b.WriteByte(5) }); err != nil {
		return err
	}
	res, err := c.waitResult(2)
	if err != nil {
		return fmt.Errorf("createStream: %w", err)
	}
	sid := 1.0
	if len(res) >= 4 {
		if f, ok := res[3].(float64); ok {
			sid = f
		}
	}
	// Set Buffer Length (user control 3) like real players, then play from live (-2 = live or recorded).
	ub := make([]byte, 10)
	binary.BigEndian.PutUint16(ub[0:2], 3)
	binary.BigEndian.PutUint32(ub[2:6], uint32(sid))
	binary.BigEndian.PutUint32(ub[6:10], 1000)
	if err := writeMessage(c.conn, 2, 4, 0, ub); err != nil {
		return err
	}
	return c.command(8, uint32(sid), "play", 0, func(b *bytes.Buffer) {
		b.WriteByte(5)
		amfString(b, stream)
		amfNumber(b, -2)
	})
}

// next reads one message and answers the protocol housekeeping (acks, pings).
func (c *RTMPConn) next() (Message, error) {
	m, err := c.cr.ReadMessage()
	if err != nil {
		return m, err
	}
	switch m.TypeID {
	case 5:
		if len(m.Payload) >= 4 {
			c.ackWindow = uint64(binary.BigEndian.Uint32(m.Payload))
		}
	case 4:
		if len(m.Payload) >= 6 && binary.BigEndian.Uint16(m.Payload[:2]) == 6 { // ping request
			resp := append([]byte{0, 7}, m.Payload[2:6]...)
			if err := writeMessage(c.conn, 2, 4, 0, resp); err != nil {
				return m, err
			}
		}
	}
	if c.ackWindow > 0 && c.cr.BytesRead-c.lastAck >= c.ackWindow {
		c.lastAck = c.cr.BytesRead
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], uint32(c.cr.BytesRead))
		if err := writeMessage(c.conn, 2, 3, 0, a[:]); err != nil {
			return m, err
		}
	}
	return m, nil
}

var errClosed = errors.New("closed")

// Next returns the next media tag (audio, video, data).
func (c *RTMPConn) Next() (Tag, error) {
	for {
		m, err := c.next()
		if err != nil {
			return Tag{}, err
		}
		if m.TypeID == 20 {
			vals := amfDecode(m.Payload)
			if len(vals) > 0 && vals[0] == "onStatus" {
				for _, v := range vals {
					if o, ok := v.(map[string]any); ok {
						if lvl, _ := o["level"].(string); lvl == "error" {
							return Tag{}, fmt.Errorf("play refused: %v", o["code"])
						}
					}
				}
			}
			continue
		}
		if m.TypeID != 8 && m.TypeID != 9 && m.TypeID != 18 {
			continue
		}
		t := Tag{Type: m.TypeID, Timestamp: m.Timestamp, Size: len(m.Payload)}
		classify(&t, m.Payload)
		return t, nil
	}
}

func (c *RTMPConn) Bytes() uint64 { return c.cr.BytesRead }
func (c *RTMPConn) Close() error  { return c.conn.Close() }
