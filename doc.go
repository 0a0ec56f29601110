// Package cardrail holds the domain of the Cardrail card-issuing service: the
// objects (programs, cards, authorizations, disputes, wallets), the rules that
// govern them (state transitions, decline decisions, money arithmetic), the
// stable error codes, and the interfaces that storage, issuing partners and the
// HTTP layer are built against.
//
// Nothing in this package talks to the network or a database; sub-packages named
// after what they wrap (store/sqlite, store/postgres, provider/sandbox, api, auth)
// implement the interfaces declared here, and cmd/cardrail wires them together.
package cardrail
