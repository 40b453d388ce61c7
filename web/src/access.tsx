import { createContext, useContext } from 'react';

/**
 * Access records that the coordinator refused an action for want of
 * access (a read token): from then on the dashboard's action buttons are
 * disabled and say why.
 */
export interface Access {
  refusal?: string;
  refuse: (message: string) => void;
}

export const AccessContext = createContext<Access>({ refuse: () => undefined });

export function useAccess(): Access {
  return useContext(AccessContext);
}
