// Package schedule runs many items, each when it is due, with one
// goroutine and one timer however many items there are, and hands each due
// item to a fixed pool of workers, which bounds how much work runs at once.
// An item waiting for its first result can be hurried ahead of the items
// merely due.
//
// It knows nothing of what an item is or what running it means (the
// stapler's items are certificates and running one is a refresh): it
// keeps due times, in one heap, on the clock it is given.
package schedule
