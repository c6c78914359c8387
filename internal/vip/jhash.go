package vip

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// jhash is the Linux kernel's jhash (include/linux/jhash.h), which nftables'
// "jhash ... mod N seed S" computes. clusterctl owner uses it to predict, in
// user space, which bucket the kernel puts a flow in. Words are read in the
// CPU's byte order (little endian on every platform the datapath runs on).
func jhash(key []byte, initval uint32) uint32 {
	const initVal = 0xdeadbeef
	length := uint32(len(key))
	a := initVal + length + initval
	b, c := a, a
	k := key
	for len(k) > 12 {
		a += binary.LittleEndian.Uint32(k)
		b += binary.LittleEndian.Uint32(k[4:])
		c += binary.LittleEndian.Uint32(k[8:])
		a, b, c = jhashMix(a, b, c)
		k = k[12:]
	}
	if len(k) == 0 {
		return c
	}
	var tail [12]byte
	copy(tail[:], k)
	a += binary.LittleEndian.Uint32(tail[0:])
	b += binary.LittleEndian.Uint32(tail[4:])
	c += binary.LittleEndian.Uint32(tail[8:])
	_, _, c = jhashFinal(a, b, c)
	return c
}

func jhashMix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

func jhashFinal(a, b, c uint32) (uint32, uint32, uint32) {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return a, b, c
}

// hashKey is what the datapath hashes for a flow, laid out as nftables'
// registers hold it: the client address (4 or 16 bytes; masked to the
// family's network prefix for network affinity) and, for affinity none,
// the client port in the next 32-bit register (2 bytes, zero padded).
func hashKey(affinity string, client netip.AddrPort) []byte {
	a := client.Addr().Unmap()
	switch affinity {
	case "single":
		return a.AsSlice()
	case "network":
		p, _ := a.Prefix(familyOf(a).netBits)
		return p.Addr().AsSlice()
	}
	addr := a.AsSlice()
	k := make([]byte, len(addr)+4)
	copy(k, addr)
	binary.BigEndian.PutUint16(k[len(addr):], client.Port())
	return k
}

// Bucket is the bucket the kernel puts a flow in: reciprocal_scale(jhash)
// exactly as nft_jhash_eval computes it.
func Bucket(affinity string, client netip.AddrPort, seed uint32, size int) int {
	h := jhash(hashKey(affinity, client), seed)
	return int(uint64(h) * uint64(size) >> 32)
}

// Seed derives the cluster-wide hash seed from the cluster name, so every
// node hashes a flow to the same bucket without configuration.
func Seed(cluster string) uint32 {
	return jhash([]byte("clusterd/seed/"+cluster), 0)
}
