// Package zlibpy owns byte-exact reproduction of the zlib streams that
// CPython's zlib.compress writes, so that the base64(zlib(...)) text atpd
// stores in processes_response is the very text EOxServer's tracker would
// have stored for the same response.
//
// Any conforming deflate encoder produces a valid stream, but each encoder
// picks different matches, block boundaries and Huffman codes; Go's
// compress/flate is no exception. To be identical, this package follows the
// reference zlib decision for decision: the window, hash and lazy-match
// rules of deflate_fast (levels 1-3) and deflate_slow (levels 4-9) with
// zlib's configuration table, blocks cut at 16383 symbols (memLevel 8), the
// stored/static/dynamic choice by computed cost, and zlib's Huffman tree
// construction including its tie-breaking and length-limit repair. It is
// written in pure Go from the algorithm as RFC 1950/1951 and zlib's own
// documentation describe it.
//
// Output equals CPython's zlib.compress(data, level) for levels 1 to 9 and
// -1 (= 6), with CPython's fixed parameters: 15 window bits, memory level 8,
// default strategy. The tests check this byte for byte against the local
// CPython (zlib 1.2.13); the algorithm has been stable across zlib 1.2.x
// and 1.3.x. CPython linked against a different deflate implementation
// (zlib-ng, as some distributions now ship in place of zlib, or the
// Intel/Cloudflare forks) writes other, equally valid, streams.
//
// Level 0 (stored) is not offered: zlib's stored output depends on the
// sizes of the output buffers the caller hands it, a CPython implementation
// detail not worth imitating. Decoding needs no imitation; use compress/zlib.
package zlibpy

import (
	"errors"
	"fmt"
	"hash/adler32"
	"sync"
)

// ErrLevel reports a compression level this package cannot reproduce.
var ErrLevel = errors.New("zlibpy: unsupported compression level")

// DefaultLevel is what zlib.compress uses when no level is given, and what
// Z_DEFAULT_COMPRESSION (-1) means.
const DefaultLevel = 6

// Compress returns what CPython's zlib.compress(data) returns.
func Compress(data []byte) []byte {
	out, err := compress(data, DefaultLevel, strategyDefault)
	if err != nil {
		// DefaultLevel is always supported; reaching this is a bug here.
		panic(err)
	}
	return out
}

// CompressLevel returns what CPython's zlib.compress(data, level) returns.
// Levels 1 to 9 and -1 are supported; others give an error wrapping ErrLevel.
func CompressLevel(data []byte, level int) ([]byte, error) {
	return compress(data, level, strategyDefault)
}

// strategy mirrors zlib's strategy parameter. CPython's zlib.compress always
// uses the default; the others exist because CPython's compressobj exposes
// them and Z_HUFFMAN_ONLY lets tests drive the Huffman code directly.
type strategy int

const (
	strategyDefault     strategy = 0 // Z_DEFAULT_STRATEGY
	strategyFiltered    strategy = 1 // Z_FILTERED
	strategyHuffmanOnly strategy = 2 // Z_HUFFMAN_ONLY
	strategyRLE         strategy = 3 // Z_RLE
	strategyFixed       strategy = 4 // Z_FIXED
)

var pool = sync.Pool{New: func() any { return newCompressor() }}

func compress(data []byte, level int, strat strategy) ([]byte, error) {
	if level == -1 {
		level = DefaultLevel
	}
	if level < 1 || level > 9 {
		return nil, fmt.Errorf("%w: %d (want 1 to 9 or -1)", ErrLevel, level)
	}
	if strat < strategyDefault || strat > strategyFixed {
		return nil, fmt.Errorf("zlibpy: unknown strategy %d", strat)
	}
	c := pool.Get().(*compressor)
	defer pool.Put(c)
	c.reset(data, level, strat)

	// Responses are mostly text that deflates to well under a quarter; the
	// rest grows by append rather than reserving the input's size up front.
	c.bw.out = make([]byte, 0, len(data)/4+64)
	c.bw.out = append(c.bw.out, zlibHeader(level, strat)...)
	switch {
	case strat == strategyHuffmanOnly:
		c.deflateHuff()
	case strat == strategyRLE:
		c.deflateRLE()
	case configTable[level].slow:
		c.deflateSlow()
	default:
		c.deflateFast()
	}
	sum := adler32.Checksum(data)
	out := append(c.bw.out, byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum))
	c.bw.out = nil
	c.in = nil
	return out, nil
}

// zlibHeader is RFC 1950's CMF/FLG pair as zlib fills it: deflate with a 32K
// window, no dictionary, and FLEVEL derived from level and strategy.
func zlibHeader(level int, strat strategy) []byte {
	var flevel uint16
	switch {
	case strat >= strategyHuffmanOnly || level < 2:
		flevel = 0
	case level < 6:
		flevel = 1
	case level == 6:
		flevel = 2
	default:
		flevel = 3
	}
	h := uint16(0x78)<<8 | flevel<<6
	h += 31 - h%31
	return []byte{byte(h >> 8), byte(h)}
}
