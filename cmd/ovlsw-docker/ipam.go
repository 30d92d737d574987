package main

// This file holds the IPAM driver: pools are the ovlsw networks' subnets,
// and addresses are handed out so that two hosts never hand out one.
//
// Design notes:
//   - A pool is the subnet Docker is given with --subnet; its ID is the
//     subnet. Docker asks for pools before it creates the network, so a pool
//     need not belong to an ovlsw network yet.
//   - The gateway is the ovlsw network's (the switch answers DNS there), or
//     what Docker asks for, or the subnet's first address.
//   - Any other address is checked against the network's endpoints on
//     every node (the daemon's cluster view) and those this plugin handed
//     out and Docker has not attached yet; a dynamic one starts the scan at
//     a random offset, so hosts rarely pick alike. The daemon then claims
//     the address cluster-wide when CreateEndpoint attaches, and refuses it
//     if another node claimed it at the same moment: Docker then fails the
//     container's start rather than two hosts sharing an address.

import (
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/http"
	"net/netip"

	"github.com/ovlsw/ovlsw/cmd/control"
)

// gatewayRequest is the RequestAddressType of Docker's gateway request.
const gatewayRequest = "com.docker.network.gateway"

func (d *driver) requestPool(req requestPoolRequest) (any, error) {
	if req.V6 {
		return nil, errors.New("ovlsw: IPv6 pools are not supported yet")
	}
	if req.Pool == "" {
		return nil, errors.New("ovlsw: give the network's subnet with --subnet")
	}
	p, err := netip.ParsePrefix(req.Pool)
	if err != nil || !p.Addr().Is4() {
		return nil, fmt.Errorf("ovlsw: subnet %q: want an IPv4 CIDR", req.Pool)
	}
	if req.SubPool != "" && req.SubPool != req.Pool {
		return nil, errors.New("ovlsw: --ip-range is not supported: addresses come from the whole subnet")
	}
	p = p.Masked()
	return requestPoolResponse{PoolID: p.String(), Pool: p.String(), Data: map[string]string{}}, nil
}

func (d *driver) releasePool(releasePoolRequest) (any, error) { return struct{}{}, nil }

// networkOfPool is the ovlsw network whose subnet is the pool, if any.
func (d *driver) networkOfPool(pool netip.Prefix) (control.NetworkDetail, bool, error) {
	var ns []control.Network
	if err := d.do(http.MethodGet, "/v1/networks", nil, &ns); err != nil {
		return control.NetworkDetail{}, false, err
	}
	for _, n := range ns {
		if n.Subnet == pool {
			detail, err := d.network(n.Name)
			return detail, err == nil, err
		}
	}
	return control.NetworkDetail{}, false, nil
}

func (d *driver) requestAddress(req requestAddressRequest) (any, error) {
	pool, err := netip.ParsePrefix(req.PoolID)
	if err != nil {
		return nil, fmt.Errorf("ovlsw: pool %q: %v", req.PoolID, err)
	}
	var want netip.Addr
	if req.Address != "" {
		if want, err = netip.ParseAddr(req.Address); err != nil || !pool.Contains(want) {
			return nil, fmt.Errorf("ovlsw: address %q is not in %v", req.Address, pool)
		}
	}
	n, found, err := d.networkOfPool(pool)
	if err != nil {
		return nil, err
	}
	answer := func(a netip.Addr) (any, error) {
		return requestAddressResponse{Address: netip.PrefixFrom(a, pool.Bits()).String(), Data: map[string]string{}}, nil
	}
	if req.Options["RequestAddressType"] == gatewayRequest {
		switch {
		case found && n.Gateway.IsValid():
			return answer(n.Gateway)
		case want.IsValid():
			return answer(want)
		}
		return answer(pool.Addr().Next())
	}
	if !found {
		return nil, fmt.Errorf("ovlsw: no ovlsw network has subnet %v", pool)
	}
	used := map[netip.Addr]bool{n.Gateway: true, n.DNS: true}
	for _, ep := range n.Endpoints {
		used[ep.Address.Addr()] = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if want.IsValid() {
		if used[want] || d.reserved[want] {
			return nil, fmt.Errorf("ovlsw: address %v is in use on network %s", want, n.Name)
		}
		d.reserved[want] = true
		return answer(want)
	}
	hostBits := uint(32 - pool.Bits())
	if hostBits < 2 {
		return nil, fmt.Errorf("ovlsw: subnet %v has no host addresses", pool)
	}
	size := uint64(1) << min(hostBits, 20)
	start := rand.Uint64N(size)
	for i := range size {
		k := (start + i) % size
		a := nth(pool, k)
		if k == 0 || k == size-1 || used[a] || d.reserved[a] {
			continue // network and broadcast addresses, taken
		}
		d.reserved[a] = true
		return answer(a)
	}
	return nil, fmt.Errorf("ovlsw: network %s: no free address left in %v", n.Name, pool)
}

func (d *driver) releaseAddress(req releaseAddressRequest) (any, error) {
	a, err := netip.ParseAddr(req.Address)
	if err != nil {
		return struct{}{}, nil // Docker may release in CIDR form elsewhere; nothing to do
	}
	d.mu.Lock()
	delete(d.reserved, a)
	d.mu.Unlock()
	return struct{}{}, nil
}

// nth is the i-th address of the IPv4 prefix p.
func nth(p netip.Prefix, i uint64) netip.Addr {
	b := new(big.Int).SetBytes(p.Addr().AsSlice())
	b.Add(b, new(big.Int).SetUint64(i))
	buf := make([]byte, 4)
	b.FillBytes(buf)
	return netip.AddrFrom4([4]byte(buf))
}
