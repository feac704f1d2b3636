/* See shim.h. Compiled by build.rs with the flags pkg-config gives for libdpdk. */
#define ALLOW_EXPERIMENTAL_API 1
#include <string.h>

#include "shim.h"

int fiberlb_rte_errno(void) { return rte_errno; }

uint16_t fiberlb_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
    return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t fiberlb_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
    return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *fiberlb_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int fiberlb_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n)
{
    return rte_pktmbuf_alloc_bulk(mp, mbufs, n);
}

void fiberlb_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

void fiberlb_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned n)
{
    rte_pktmbuf_free_bulk(mbufs, n);
}

uint8_t *fiberlb_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, uint8_t *); }

uint8_t *fiberlb_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
    return (uint8_t *)rte_pktmbuf_append(m, len);
}

uint16_t fiberlb_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }

uint32_t fiberlb_pktmbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }

struct rte_mempool *fiberlb_pktmbuf_pool(const struct rte_mbuf *m) { return m->pool; }

void fiberlb_mbuf_views(struct rte_mbuf *const *pkts, uint16_t n, struct fiberlb_mbuf_view *out)
{
    for (uint16_t i = 0; i < n; i++) {
        const struct rte_mbuf *m = pkts[i];
        out[i].buf = (uint8_t *)m->buf_addr;
        out[i].buf_len = m->buf_len;
        out[i].data_off = m->data_off;
        out[i].data_len = m->data_len;
        out[i].multi_seg = m->nb_segs != 1 || m->pkt_len != m->data_len;
    }
}

void fiberlb_mbuf_set(struct rte_mbuf *m, uint16_t data_off, uint16_t len)
{
    m->data_off = data_off;
    m->data_len = len;
    m->pkt_len = len;
}

int fiberlb_port_info(uint16_t port, struct fiberlb_port_info *out)
{
    struct rte_eth_dev_info info;
    int rc = rte_eth_dev_info_get(port, &info);
    if (rc != 0)
        return rc;
    out->max_rx_queues = info.max_rx_queues;
    out->max_tx_queues = info.max_tx_queues;
    out->rx_desc_max = info.rx_desc_lim.nb_max;
    out->tx_desc_max = info.tx_desc_lim.nb_max;
    out->flow_type_rss_offloads = info.flow_type_rss_offloads;
    memset(out->driver_name, 0, sizeof(out->driver_name));
    if (info.driver_name != NULL)
        strncpy(out->driver_name, info.driver_name, sizeof(out->driver_name) - 1);
    return 0;
}

int fiberlb_port_configure(uint16_t port, uint16_t nb_rxq, uint16_t nb_txq, uint64_t rss_hf)
{
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    if (rss_hf != 0) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_key = NULL; /* the driver's default key */
        conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
    }
    return rte_eth_dev_configure(port, nb_rxq, nb_txq, &conf);
}

int fiberlb_link_get(uint16_t port, struct fiberlb_link *out)
{
    struct rte_eth_link link;
    memset(&link, 0, sizeof(link));
    int rc = rte_eth_link_get_nowait(port, &link);
    if (rc != 0)
        return rc;
    out->speed_mbps = link.link_speed;
    out->up = link.link_status == RTE_ETH_LINK_UP;
    out->full_duplex = link.link_duplex == RTE_ETH_LINK_FULL_DUPLEX;
    return 0;
}

int fiberlb_thread_register(void)
{
    if (rte_lcore_id() != LCORE_ID_ANY)
        return (int)rte_lcore_id();
    if (rte_thread_register() != 0)
        return -1;
    return (int)rte_lcore_id();
}

void fiberlb_thread_unregister(void) { rte_thread_unregister(); }

unsigned fiberlb_lcore_id(void) { return rte_lcore_id(); }

uint16_t fiberlb_eth_ports(uint16_t *out, uint16_t max)
{
    uint16_t n = 0;
    uint16_t p;
    RTE_ETH_FOREACH_DEV(p) {
        if (n < max)
            out[n] = p;
        n++;
    }
    return n;
}

unsigned fiberlb_ring_enqueue_burst(struct rte_ring *r, struct rte_mbuf **pkts, unsigned n)
{
    return rte_ring_enqueue_burst(r, (void *const *)pkts, n, NULL);
}

unsigned fiberlb_ring_dequeue_burst(struct rte_ring *r, struct rte_mbuf **pkts, unsigned n)
{
    return rte_ring_dequeue_burst(r, (void **)pkts, n, NULL);
}

unsigned fiberlb_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }
