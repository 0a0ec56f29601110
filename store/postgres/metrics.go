package postgres

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollectors implements sqlstore.PoolReporter: the pgx pool's
// statistics, read at scrape time.
func (c *Conn) PoolCollectors() []prometheus.Collector {
	return []prometheus.Collector{poolCollector{c.Pool}}
}

var (
	poolMax      = prometheus.NewDesc("cardrail_db_pool_max_connections", "Most connections the PostgreSQL pool may open.", nil, nil)
	poolTotal    = prometheus.NewDesc("cardrail_db_pool_total_connections", "Connections in the PostgreSQL pool: acquired, idle and being opened.", nil, nil)
	poolAcquired = prometheus.NewDesc("cardrail_db_pool_acquired_connections", "PostgreSQL pool connections in use.", nil, nil)
	poolIdle     = prometheus.NewDesc("cardrail_db_pool_idle_connections", "PostgreSQL pool connections idle.", nil, nil)
	poolAcquires = prometheus.NewDesc("cardrail_db_pool_acquires_total", "Connections taken from the PostgreSQL pool.", nil, nil)
	poolWaited   = prometheus.NewDesc("cardrail_db_pool_empty_acquires_total", "Acquires that found no idle connection and waited for one.", nil, nil)
	poolWait     = prometheus.NewDesc("cardrail_db_pool_acquire_wait_seconds_total", "Time acquires spent waiting for a connection to be freed or opened.", nil, nil)
	poolCanceled = prometheus.NewDesc("cardrail_db_pool_canceled_acquires_total", "Acquires given up (their context ended) before a connection was free.", nil, nil)
)

// poolCollector reads pgxpool.Stat, a snapshot taken under the pool's lock.
type poolCollector struct{ pool *pgxpool.Pool }

func (poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolMax, poolTotal, poolAcquired, poolIdle, poolAcquires, poolWaited, poolWait, poolCanceled} {
		ch <- d
	}
}

func (p poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := p.pool.Stat()
	gauge := func(d *prometheus.Desc, v int32) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(poolMax, st.MaxConns())
	gauge(poolTotal, st.TotalConns())
	gauge(poolAcquired, st.AcquiredConns())
	gauge(poolIdle, st.IdleConns())
	counter(poolAcquires, float64(st.AcquireCount()))
	counter(poolWaited, float64(st.EmptyAcquireCount()))
	counter(poolWait, st.EmptyAcquireWaitTime().Seconds())
	counter(poolCanceled, float64(st.CanceledAcquireCount()))
}
