// Package crypt seals a store's objects with authenticated encryption
// under keys derived from the store's master key: a Store wrapper that
// callers read and write in plaintext while the store beneath holds only
// sealed segments (docs/design.md §5).
package crypt
