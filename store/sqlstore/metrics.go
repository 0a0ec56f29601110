package sqlstore

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// PoolReporter is a Conn whose connection pool can be read by Prometheus.
type PoolReporter interface {
	// PoolCollectors returns collectors that read the pool's statistics
	// at scrape time.
	PoolCollectors() []prometheus.Collector
}

// RegisterPoolMetrics registers the connection pool's metrics on reg, when
// the store's connection reports them (both databases' do); otherwise it
// registers nothing.
func (s *Store) RegisterPoolMetrics(reg prometheus.Registerer) error {
	p, ok := s.conn.(PoolReporter)
	if !ok {
		return nil
	}
	for _, c := range p.PoolCollectors() {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// PoolCollectors implements PoolReporter with database/sql's statistics
// (the go_sql_* series), labelled db_name="writer" and, when the reads have
// their own pool, db_name="reader".
func (c *SQLConn) PoolCollectors() []prometheus.Collector {
	out := []prometheus.Collector{collectors.NewDBStatsCollector(c.Writer, "writer")}
	if c.Reader != c.Writer {
		out = append(out, collectors.NewDBStatsCollector(c.Reader, "reader"))
	}
	return out
}
