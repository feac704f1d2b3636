/* fiberlb's C shim over DPDK: the static-inline fast-path functions (which bindgen cannot
 * link to) and a few helpers that build DPDK structs with bitfields/unions in C, so the Rust
 * side binds only plain functions and small plain structs. */
#ifndef FIBERLB_DPDK_SHIM_H
#define FIBERLB_DPDK_SHIM_H

#include <stdint.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_eth_ring.h>

/* Data-room size of fiberlb's mbufs (RTE_MBUF_DEFAULT_BUF_SIZE: 2048 + headroom). */
#define FIBERLB_MBUF_BUF_SIZE RTE_MBUF_DEFAULT_BUF_SIZE
static const uint16_t fiberlb_mbuf_buf_size = FIBERLB_MBUF_BUF_SIZE;

/* Where one single-segment packet lives: buf[data_off .. data_off + data_len] of a buffer of
 * buf_len bytes. multi_seg is non-zero for a chained mbuf (not supported on the fast path). */
struct fiberlb_mbuf_view {
    uint8_t *buf;
    uint16_t buf_len;
    uint16_t data_off;
    uint16_t data_len;
    uint16_t multi_seg;
};

struct fiberlb_port_info {
    uint16_t max_rx_queues;
    uint16_t max_tx_queues;
    uint16_t rx_desc_max;
    uint16_t tx_desc_max;
    uint64_t flow_type_rss_offloads;
    char driver_name[64];
};

struct fiberlb_link {
    uint32_t speed_mbps;
    uint8_t up;
    uint8_t full_duplex;
};

#define FIBERLB_RSS_DEFAULT (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP)
static const uint64_t fiberlb_rss_default = FIBERLB_RSS_DEFAULT;

int fiberlb_rte_errno(void);
uint16_t fiberlb_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t fiberlb_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *fiberlb_pktmbuf_alloc(struct rte_mempool *mp);
int fiberlb_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n);
void fiberlb_pktmbuf_free(struct rte_mbuf *m);
void fiberlb_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned n);
uint8_t *fiberlb_pktmbuf_mtod(struct rte_mbuf *m);
uint8_t *fiberlb_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
uint16_t fiberlb_pktmbuf_headroom(const struct rte_mbuf *m);
uint32_t fiberlb_pktmbuf_pkt_len(const struct rte_mbuf *m);
struct rte_mempool *fiberlb_pktmbuf_pool(const struct rte_mbuf *m);
void fiberlb_mbuf_views(struct rte_mbuf *const *pkts, uint16_t n, struct fiberlb_mbuf_view *out);
void fiberlb_mbuf_set(struct rte_mbuf *m, uint16_t data_off, uint16_t len);
int fiberlb_port_info(uint16_t port, struct fiberlb_port_info *out);
int fiberlb_port_configure(uint16_t port, uint16_t nb_rxq, uint16_t nb_txq, uint64_t rss_hf);
int fiberlb_link_get(uint16_t port, struct fiberlb_link *out);
int fiberlb_thread_register(void);
void fiberlb_thread_unregister(void);
unsigned fiberlb_lcore_id(void);
uint16_t fiberlb_eth_ports(uint16_t *out, uint16_t max);
/* Rings, for ring-backed test ports (rte_eth_from_rings). */
unsigned fiberlb_ring_enqueue_burst(struct rte_ring *r, struct rte_mbuf **pkts, unsigned n);
unsigned fiberlb_ring_dequeue_burst(struct rte_ring *r, struct rte_mbuf **pkts, unsigned n);
unsigned fiberlb_ring_count(const struct rte_ring *r);

#endif
